//! SandboxStatus, Platform, PingSandbox and the pod's pids: read-only verbs.

use super::*;

/// A read-only view of a running pod, for what runs containers in it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub id: String,
    /// The holder: `/proc/<pid>/ns/*` are the pod's namespaces.
    pub pid: u32,
    pub bundle: PathBuf,
    /// The pod cgroup, relative to each hierarchy's root.
    pub cgroup: PathBuf,
    /// hostname, hosts, resolv.conf and shm, where the pod has them.
    pub files: Vec<PathBuf>,
    pub host_network: bool,
}

impl PodView {
    /// The path of one of the pod's namespaces (`net`, `ipc`, `uts`, `pid`).
    pub fn ns_path(&self, ns: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{ns}", self.pid))
    }
}

impl Engine {
    /// The pod as containers see it; FailedPrecondition unless it runs.
    pub fn view(&self, id: &str) -> Result<PodView> {
        self.ping(id)?;
        let sb = self.get(id)?;
        let rec = sb.rec();
        Ok(PodView {
            id: rec.id.clone(),
            pid: rec.pid,
            bundle: rec.bundle.clone(),
            cgroup: rec.cgroup.clone(),
            files: rec.files.clone(),
            host_network: rec.network == Network::Host,
        })
    }

    /// The OS seam this engine drives, for the container engine beside it.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The ids of the sandboxes this engine holds.
    pub fn ids(&self) -> Vec<String> {
        self.slots().keys().cloned().collect()
    }

    pub fn platform(&self, id: &str) -> Result<Platform> {
        self.get(id)?;
        Ok(self.platform.clone())
    }

    pub fn status(&self, id: &str, verbose: bool) -> Result<Status> {
        let sb = self.get(id)?;
        let exited = sb.exit.borrow().is_some();
        let rec = sb.rec();
        let ready = rec.phase == Phase::Running && !exited;
        let mut status = Status {
            id: rec.id.clone(),
            pid: rec.pid,
            ready,
            phase: rec.phase,
            created_at: to_time(rec.created_at),
            exited_at: rec.exited_at.map(to_time),
            exit_status: rec.exit_status,
            bundle: rec.bundle.clone(),
            info: BTreeMap::new(),
        };
        if verbose {
            let rec = rec.clone();
            status.info = self.diagnostics(&rec, ready, exited);
        }
        Ok(status)
    }

    /// SandboxStatus' verbose `info`: where everything is, as the kernel sees it.
    fn diagnostics(&self, rec: &Record, ready: bool, exited: bool) -> BTreeMap<String, String> {
        let mut info = BTreeMap::new();
        info.insert("phase".into(), rec.phase.name().into());
        info.insert("bundle".into(), rec.bundle.display().to_string());
        info.insert("hostname".into(), rec.hostname.clone());
        info.insert("cgroup".into(), rec.cgroup.display().to_string());
        info.insert(
            "cgroup_version".into(),
            cgroup::version_name(rec.cgroup_version).into(),
        );
        let hp: Vec<String> = self
            .host
            .cgroups
            .host_paths(&rec.cgroup)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        info.insert("cgroup_paths".into(), hp.join(","));
        info.insert(
            "network".into(),
            match &rec.network {
                Network::Join(p) => format!("join:{}", p.display()),
                Network::New => "new".into(),
                Network::Host => "host".into(),
            },
        );
        if ready {
            for ns in ["net", "ipc", "uts", "pid"] {
                info.insert(format!("ns.{ns}"), format!("/proc/{}/ns/{ns}", rec.pid));
            }
            let state = self.host.procs.state(rec.pid).map(String::from);
            info.insert(
                "holder_state".into(),
                state.unwrap_or_else(|| "gone".into()),
            );
        } else {
            info.insert(
                "holder_state".into(),
                if exited { "exited" } else { "not started" }.into(),
            );
        }
        if let Some(s) = rec.exit_status {
            info.insert("exit_status".into(), s.to_string());
        }
        info
    }

    /// Every pid in the sandbox's cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let sb = self.get(id)?;
        let rel = sb.rec().cgroup.clone();
        self.host
            .cgroups
            .pids(&rel)
            .map_err(Error::os(id, "list pod processes"))
    }

    // ---- PingSandbox ---------------------------------------------------

    pub fn ping(&self, id: &str) -> Result<()> {
        let sb = self.get(id)?;
        let phase = sb.rec().phase;
        if phase == Phase::Running && sb.exit.borrow().is_none() {
            Ok(())
        } else {
            Err(Error::precondition(
                id,
                format!("is {}, not running", phase.name()),
            ))
        }
    }
}
