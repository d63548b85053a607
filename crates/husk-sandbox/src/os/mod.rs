//! The OS seam: every effect on the kernel the engine needs, behind narrow
//! traits with a real Linux implementation and a recording fake.

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use crate::config::Mount;
use crate::error::OsError;
use crate::metrics::CgroupStats;

pub mod cgroup;
pub mod confine;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod holder;
pub mod mount;
pub mod pause;
pub mod proc;

/// Which cgroup hierarchy a driver manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Creates, inspects, kills and removes pod cgroups. `rel` is the cgroup's
/// path relative to each hierarchy's root, such as `/husk/pod1`.
pub trait Cgroups: Send + Sync {
    fn version(&self) -> CgroupVersion;
    /// Creates `rel` in every hierarchy; returns the directories it made,
    /// outermost first, so cleanup removes exactly those.
    fn create(&self, rel: &Path) -> Result<Vec<PathBuf>, OsError>;
    /// The files a single-threaded process writes `0` into to move itself
    /// into `rel` (`tasks` on v1, `cgroup.procs` on v2).
    fn join_files(&self, rel: &Path) -> Vec<PathBuf>;
    /// Every pid in `rel`, across hierarchies, without duplicates.
    fn pids(&self, rel: &Path) -> Result<Vec<u32>, OsError>;
    /// Sends `signal` to every process in `rel`.
    fn kill_all(&self, rel: &Path, signal: i32) -> Result<(), OsError>;
    /// Removes the given directories (as returned by `create`), innermost
    /// first. Missing ones are fine: removal is idempotent.
    fn remove(&self, created: &[PathBuf]) -> Result<(), OsError>;
    fn stats(&self, rel: &Path) -> Result<CgroupStats, OsError>;
    /// Host paths of `rel`, for diagnostics.
    fn host_paths(&self, rel: &Path) -> Vec<PathBuf>;
    /// A cgroup v2 directory the holder can be created in directly
    /// (clone3 with CLONE_INTO_CGROUP); `None` on v1.
    fn birth_cgroup(&self, _rel: &Path) -> Option<PathBuf> {
        None
    }
}

/// What the pod holder is started with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolderSpec {
    /// A network namespace file to join.
    pub join_netns: Option<PathBuf>,
    pub new_net: bool,
    pub new_uts: bool,
    pub new_ipc: bool,
    pub new_pid: bool,
    /// Set inside the new UTS namespace (only with `new_uts`).
    pub hostname: Option<String>,
    /// `(name, value)` written under /proc/sys from inside the namespaces.
    pub sysctls: Vec<(String, String)>,
    /// Files the holder writes `0` into, to join the pod cgroup before it
    /// runs anything (see `Cgroups::join_files`).
    pub cgroup_join: Vec<PathBuf>,
    /// A v2 cgroup to create the holder in; `cgroup_join` is then only the
    /// fallback for kernels without CLONE_INTO_CGROUP.
    pub clone_into: Option<PathBuf>,
}

/// Starts, signals and watches the pod holder.
#[async_trait::async_trait]
pub trait Processes: Send + Sync {
    /// Starts the holder once it runs the pause program. Returns its host
    /// pid and a future that resolves with its exit status (128+signal for
    /// a signal) once it has exited and been reaped.
    async fn spawn_holder(
        &self,
        spec: &HolderSpec,
    ) -> Result<(u32, BoxFuture<'static, u32>), OsError>;
    /// Watches a child of this process (a container's init or exec process,
    /// reparented to the shim as its subreaper). The future resolves with
    /// its exit status (128+signal for a signal) once it has been reaped.
    fn watch_child(&self, pid: u32) -> Result<BoxFuture<'static, u32>, OsError>;
    /// Resolves once `pid`, not a child (adopted after a shim restart), is gone.
    fn watch_foreign(&self, pid: u32) -> Result<BoxFuture<'static, ()>, OsError>;
    /// Sends a signal; a pid that is already gone is not an error.
    fn signal(&self, pid: u32, signal: i32) -> Result<(), OsError>;
    /// The process's start time in clock ticks since boot, to tell a pid
    /// from a later process that reused it. `None` if it does not exist.
    fn start_time(&self, pid: u32) -> Option<u64>;
    /// One-letter scheduler state from /proc/<pid>/stat (R, S, Z…).
    fn state(&self, pid: u32) -> Option<char>;
}

/// Mounts and namespace files.
pub trait Mounts: Send + Sync {
    fn mount(&self, m: &Mount, target: &Path) -> Result<(), OsError>;
    /// A tmpfs for the pod's /dev/shm.
    fn mount_shm(&self, target: &Path) -> Result<(), OsError>;
    /// Unmounts (lazily) if mounted; not mounted is fine.
    fn unmount(&self, target: &Path) -> Result<(), OsError>;
    /// Fails unless `path` is a network namespace file.
    fn check_netns(&self, path: &Path) -> Result<(), OsError>;
}
