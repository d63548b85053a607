//! The read-only verbs: State, Wait, Pids, Stats, Connect.

use husk_sandbox::metrics::CgroupStats;

use super::*;

impl Tasks {
    pub fn state(&self, id: &str, exec_id: &str) -> Result<ProcessState> {
        let c = self.get(id)?;
        let p = c.process(exec_id)?;
        Ok(c.state(&p))
    }

    /// Resolves once the process has exited and its output has drained.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<Exit> {
        let c = self.get(id)?;
        let p = c.process(exec_id)?;
        Ok(p.wait().await)
    }

    /// Every pid in the container's cgroup (the init alone without one).
    pub fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let c = self.get(id)?;
        match &c.spec.cgroup {
            Some(cg) => self
                .host
                .cgroups
                .pids(cg)
                .map_err(Error::os(id, "list container processes")),
            None => Ok(vec![c.init.pid()].into_iter().filter(|p| *p > 0).collect()),
        }
    }

    /// cgroup statistics of the container.
    pub fn stats(&self, id: &str) -> Result<CgroupStats> {
        let c = self.get(id)?;
        let cg = c
            .spec
            .cgroup
            .as_ref()
            .ok_or_else(|| Error::precondition(id, "has no cgroup"))?;
        self.host
            .cgroups
            .stats(cg)
            .map_err(Error::os(id, "read cgroup stats"))
    }

    /// The init's pid, for Connect.
    pub fn pid(&self, id: &str) -> Result<u32> {
        Ok(self.get(id)?.init.pid())
    }
}
