//! SandboxMetrics.

use super::*;

impl Engine {
    pub fn metrics(&self, id: &str) -> Result<SandboxMetrics> {
        let sb = self.get(id)?;
        let rel = sb.rec().cgroup.clone();
        let stats = self
            .host
            .cgroups
            .stats(&rel)
            .map_err(Error::os(id, "read cgroup stats"))?;
        Ok(SandboxMetrics {
            id: id.to_string(),
            at: SystemTime::now(),
            stats,
        })
    }
}
