//! The OCI runtime seam: what the engine asks of `runc` (or another
//! binary with runc's command line). [`runc::Runc`] runs the binary as an
//! async child; `fake::FakeRuntime` records calls for tests.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::options::RuntimeOptions;

#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod native;
pub mod runc;

/// The stdio a runtime hands to the process it starts (None: /dev/null).
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

#[derive(Debug)]
pub struct CreateOpts<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: &'a Path,
    pub console_socket: Option<&'a Path>,
    pub stdio: Stdio,
}

#[derive(Debug)]
pub struct ExecOpts<'a> {
    pub id: &'a str,
    /// A file holding the OCI process JSON.
    pub process: &'a Path,
    pub pid_file: &'a Path,
    pub console_socket: Option<&'a Path>,
    pub stdio: Stdio,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{binary} {command}: {message}")]
    Failed {
        binary: String,
        command: &'static str,
        message: String,
    },
}

/// One container's runtime. Every call is an async child process: none
/// blocks the server's thread.
#[async_trait]
pub trait OciRuntime: Send + Sync {
    /// Creates the container; its init waits for `start`. The pid is in
    /// `pid_file` when this returns.
    async fn create(&self, o: CreateOpts<'_>) -> Result<(), RuntimeError>;
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// Starts an extra process, detached; its pid is in `pid_file`.
    async fn exec(&self, o: ExecOpts<'_>) -> Result<(), RuntimeError>;
    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError>;
    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
    /// Drops the runtime's own record of a container whose processes and
    /// cgroup the engine has already removed: the last resort when the
    /// runtime cannot be run at all. Blocking-free and idempotent.
    fn forget(&self, _id: &str) {}
    async fn pause(&self, id: &str) -> Result<(), RuntimeError>;
    async fn resume(&self, id: &str) -> Result<(), RuntimeError>;
    /// Applies OCI `LinuxResources` JSON.
    async fn update(&self, id: &str, resources: &[u8]) -> Result<(), RuntimeError>;
}

/// Makes a container's runtime from its options.
pub trait RuntimeFactory: Send + Sync {
    fn runtime(&self, opts: &RuntimeOptions, bundle: &Path) -> Arc<dyn OciRuntime>;
}

/// Real runtimes: husk's own ([`native::Native`]) unless the options
/// name a binary with runc's command line; state under `root` unless the
/// options name another.
pub struct Binaries {
    pub root: PathBuf,
    /// The host's cgroups, for husk's own runtime.
    pub cgroups: Arc<dyn husk_sandbox::os::Cgroups>,
    /// The binary husk's own runtime re-executes as its helper.
    pub helper: PathBuf,
}

impl RuntimeFactory for Binaries {
    fn runtime(&self, opts: &RuntimeOptions, bundle: &Path) -> Arc<dyn OciRuntime> {
        let root = opts.root.clone().unwrap_or_else(|| self.root.clone());
        if opts.binary() == native::NAME {
            return Arc::new(native::Native::new(
                self.helper.clone(),
                root,
                self.cgroups.clone(),
                opts.systemd_cgroup,
            ));
        }
        Arc::new(runc::Runc {
            binary: opts.binary().to_string(),
            root,
            systemd_cgroup: opts.systemd_cgroup,
            log: bundle.join("log.json"),
        })
    }
}
