//! A recording OCI runtime over husk-sandbox's fake OS: "containers" are
//! fake processes in the cgroup their spec names.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use husk_sandbox::os::fake::FakeOs;
use husk_sandbox::os::Processes;

use super::{CreateOpts, ExecOpts, OciRuntime, RuntimeError, RuntimeFactory};
use crate::options::RuntimeOptions;

#[derive(Default)]
struct St {
    calls: Vec<String>,
    fail: BTreeSet<&'static str>,
    pids: HashMap<String, Vec<u32>>,
    cgroups: HashMap<String, PathBuf>,
    binaries: Vec<String>,
}

#[derive(Clone)]
pub struct FakeRuntime {
    os: FakeOs,
    st: Arc<Mutex<St>>,
}

impl FakeRuntime {
    pub fn new(os: FakeOs) -> Self {
        FakeRuntime {
            os,
            st: Arc::default(),
        }
    }

    fn st(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next `op` ("create", "start", "exec", …) fail.
    pub fn fail_next(&self, op: &'static str) {
        self.st().fail.insert(op);
    }

    /// Every call, as "op id".
    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }

    /// The binaries the factory was asked for.
    pub fn binaries(&self) -> Vec<String> {
        self.st().binaries.clone()
    }

    fn call(&self, op: &'static str, id: &str) -> Result<(), RuntimeError> {
        let mut st = self.st();
        st.calls.push(format!("{op} {id}"));
        if st.fail.remove(op) {
            return Err(RuntimeError::Failed {
                binary: "fake".into(),
                command: op,
                message: "injected failure".into(),
            });
        }
        Ok(())
    }

    fn spawn(&self, id: &str, pid_file: &Path) -> Result<(), RuntimeError> {
        let rel = self
            .st()
            .cgroups
            .get(id)
            .cloned()
            .unwrap_or_else(|| PathBuf::from("/fake").join(id));
        let pid = self.os.add_process(&rel);
        self.st().pids.entry(id.to_string()).or_default().push(pid);
        std::fs::write(pid_file, pid.to_string()).map_err(|e| RuntimeError::Failed {
            binary: "fake".into(),
            command: "pid-file",
            message: e.to_string(),
        })
    }
}

impl RuntimeFactory for FakeRuntime {
    fn runtime(&self, opts: &RuntimeOptions, _bundle: &Path) -> Arc<dyn OciRuntime> {
        self.st().binaries.push(opts.binary().to_string());
        Arc::new(self.clone())
    }
}

#[async_trait]
impl OciRuntime for FakeRuntime {
    async fn create(&self, o: CreateOpts<'_>) -> Result<(), RuntimeError> {
        self.call("create", o.id)?;
        if let Ok(spec) = crate::spec::load(o.bundle) {
            if let Some(cg) = spec.cgroup {
                self.st().cgroups.insert(o.id.to_string(), cg);
            }
        }
        self.spawn(o.id, o.pid_file)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.call("start", id)
    }

    async fn exec(&self, o: ExecOpts<'_>) -> Result<(), RuntimeError> {
        self.call("exec", o.id)?;
        self.spawn(o.id, o.pid_file)
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        self.call(if all { "kill-all" } else { "kill" }, id)?;
        let pids = self.st().pids.get(id).cloned().unwrap_or_default();
        for pid in pids {
            let _ = self.os.signal(pid, signal as i32);
        }
        Ok(())
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        self.call(if force { "delete-force" } else { "delete" }, id)?;
        if force {
            let pids = self.st().pids.get(id).cloned().unwrap_or_default();
            for pid in pids {
                let _ = self.os.signal(pid, libc::SIGKILL);
            }
        }
        self.st().pids.remove(id);
        Ok(())
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.call("pause", id)
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.call("resume", id)
    }

    async fn update(&self, id: &str, _resources: &[u8]) -> Result<(), RuntimeError> {
        self.call("update", id)
    }
}
