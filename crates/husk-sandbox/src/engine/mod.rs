//! The sandbox engine: owns every sandbox's state machine and drives the
//! OS traits. One engine serves one shim process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::config::{check_hostname, check_sysctl, CreateRequest, Network, NsMode};
use crate::error::{Error, OsError, Result};
use crate::metrics::CgroupStats;
use crate::os::{cgroup, Cgroups, HolderSpec, Mounts, Processes};
use crate::platform::{self, Platform};
use crate::podfiles;
use crate::state::{now_nanos, to_time, Phase, Record, StateStore};

mod create;
mod metrics;
mod reclaim;
mod restore;
mod shutdown;
mod start;
mod status;
mod stop;
mod wait;

pub use reclaim::{reclaim, teardown, Reclaimed};
pub use status::PodView;

/// Exit status a sandbox reports when the real one could not be observed
/// (its holder died while no shim was watching).
pub const UNKNOWN_EXIT: u32 = 255;

/// How long Stop waits for SIGKILLed processes to vanish before it fails.
const KILL_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub status: u32,
    pub at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    pub created_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub id: String,
    pub pid: u32,
    pub ready: bool,
    pub phase: Phase,
    pub created_at: SystemTime,
    pub exited_at: Option<SystemTime>,
    pub exit_status: Option<u32>,
    pub bundle: PathBuf,
    /// Diagnostics, filled when asked for verbosely.
    pub info: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SandboxMetrics {
    pub id: String,
    pub at: SystemTime,
    pub stats: CgroupStats,
}

struct Sandbox {
    /// Serialises the verbs that change the sandbox (start, stop, shutdown).
    ops: tokio::sync::Mutex<()>,
    rec: Mutex<Record>,
    exit: watch::Sender<Option<ExitInfo>>,
}

impl Sandbox {
    fn new(rec: Record) -> Arc<Self> {
        let exit = match (rec.phase, rec.exited_at) {
            (Phase::Stopped, Some(at)) => Some(ExitInfo {
                status: rec.exit_status.unwrap_or(UNKNOWN_EXIT),
                at: to_time(at),
            }),
            _ => None,
        };
        Arc::new(Sandbox {
            ops: tokio::sync::Mutex::new(()),
            rec: Mutex::new(rec),
            exit: watch::channel(exit).0,
        })
    }

    fn rec(&self) -> MutexGuard<'_, Record> {
        // A poisoned lock only means another request panicked mid-update;
        // the record itself is plain data and still usable.
        self.rec.lock().unwrap_or_else(|p| p.into_inner())
    }
}

enum Slot {
    /// Reserved by a CreateSandbox still in progress.
    Creating,
    Ready(Arc<Sandbox>),
}

/// The OS seam the engine drives.
#[derive(Clone)]
pub struct Host {
    pub cgroups: Arc<dyn Cgroups>,
    pub procs: Arc<dyn Processes>,
    pub mounts: Arc<dyn Mounts>,
}

pub struct Engine {
    host: Host,
    store: StateStore,
    platform: Platform,
    slots: Mutex<HashMap<String, Slot>>,
    /// Ids shut down by this engine, so a retried Shutdown succeeds.
    gone: Mutex<HashSet<String>>,
}

impl Engine {
    pub fn new(host: Host, store: StateStore) -> Self {
        Engine {
            host,
            store,
            platform: platform::host(),
            slots: Mutex::new(HashMap::new()),
            gone: Mutex::new(HashSet::new()),
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<Sandbox>> {
        crate::id::validate(id)?;
        match self.slots().get(id) {
            Some(Slot::Ready(sb)) => Ok(sb.clone()),
            Some(Slot::Creating) => Err(Error::precondition(id, "is still being created")),
            None => Err(Error::NotFound(id.to_string())),
        }
    }

    /// Number of sandboxes this engine holds.
    pub fn len(&self) -> usize {
        self.slots().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn was_shut_down(&self, id: &str) -> bool {
        self.gone
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }
}

fn record_exit(sb: &Sandbox, store: &StateStore, status: u32) {
    let info = {
        let mut rec = sb.rec();
        if rec.phase == Phase::Stopped && rec.exited_at.is_some() {
            return;
        }
        let at = now_nanos();
        rec.phase = Phase::Stopped;
        rec.exit_status = Some(status);
        rec.exited_at = Some(at);
        if let Err(e) = store.save(&rec) {
            tracing::warn!(id = %rec.id, error = %e, "persisting exit failed");
        }
        ExitInfo {
            status,
            at: to_time(at),
        }
    };
    sb.exit.send_replace(Some(info));
}

impl Host {
    /// The real Linux host; the holder runs `exe` as its pause program.
    pub fn linux(exe: PathBuf) -> std::result::Result<Host, OsError> {
        Ok(Host {
            cgroups: cgroup::detect()?,
            procs: Arc::new(crate::os::proc::LinuxProcesses::new(exe)),
            mounts: Arc::new(crate::os::mount::LinuxMounts),
        })
    }

    /// A host made of one fake OS, for tests.
    #[cfg(any(test, feature = "test-util"))]
    pub fn fake(os: &crate::os::fake::FakeOs) -> Host {
        Host {
            cgroups: Arc::new(os.clone()),
            procs: Arc::new(os.clone()),
            mounts: Arc::new(os.clone()),
        }
    }
}
