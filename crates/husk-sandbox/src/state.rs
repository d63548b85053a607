//! A sandbox's persisted record and the store that keeps it on disk.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::{Mount, Network, PodConfig};
use crate::error::Error;
use crate::os::CgroupVersion;

/// The sandbox state machine: Created -> Running -> Stopped. Shutdown
/// removes the record from any phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Created,
    Running,
    Stopped,
}

/// Guards: which verbs each phase allows.
impl Phase {
    /// StartSandbox clones a holder only from Created.
    pub fn can_start(self) -> bool {
        self == Phase::Created
    }

    /// A recorded holder pid may still name the pod's holder.
    pub fn holder_may_live(self) -> bool {
        self == Phase::Running
    }

    /// Stop has to signal a holder (Created has none, Stopped has none left).
    pub fn can_signal(self) -> bool {
        self == Phase::Running
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Created => "created",
            Phase::Running => "running",
            Phase::Stopped => "stopped",
        }
    }
}

/// Nanoseconds since the epoch, the on-disk form of a timestamp.
pub type Nanos = u64;

pub fn now_nanos() -> Nanos {
    to_nanos(SystemTime::now())
}

pub fn to_nanos(t: SystemTime) -> Nanos {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn to_time(n: Nanos) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n)
}

/// Everything needed to answer for a sandbox and to clean it up, even from
/// another process (`shim delete`) after the serving shim died.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub network: Network,
    pub pod: PodConfig,
    pub hostname: String,
    pub rootfs: Vec<Mount>,
    pub cgroup: PathBuf,
    pub cgroup_version: CgroupVersion,
    /// cgroup directories this sandbox made (outermost first).
    pub cgroup_created: Vec<PathBuf>,
    /// Mount points this sandbox mounted, in mount order.
    pub mounts: Vec<PathBuf>,
    /// Files and directories this sandbox created, in creation order.
    pub files: Vec<PathBuf>,
    pub phase: Phase,
    pub pid: u32,
    /// The holder's start time (clock ticks since boot), to recognise it.
    pub pid_start: u64,
    pub created_at: Nanos,
    pub exited_at: Option<Nanos>,
    pub exit_status: Option<u32>,
}

/// State files under `root/<id>/state.json`, written atomically.
#[derive(Debug, Clone)]
pub struct StateStore {
    root: PathBuf,
}

impl StateStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateStore { root: root.into() }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
        move |source| Error::State {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Writes the record to a temporary file and renames it into place, so
    /// a reader sees the old or the new record, never half of one.
    pub fn save(&self, rec: &Record) -> Result<(), Error> {
        let dir = self.dir(&rec.id);
        fs::create_dir_all(&dir).map_err(Self::err(&dir))?;
        let tmp = dir.join("state.json.tmp");
        let dst = dir.join("state.json");
        let data = serde_json::to_vec(rec).map_err(|e| Error::State {
            path: dst.clone(),
            source: io::Error::other(e),
        })?;
        let mut f = fs::File::create(&tmp).map_err(Self::err(&tmp))?;
        f.write_all(&data).map_err(Self::err(&tmp))?;
        drop(f);
        fs::rename(&tmp, &dst).map_err(Self::err(&dst))
    }

    pub fn load(&self, id: &str) -> Result<Option<Record>, Error> {
        let path = self.dir(id).join("state.json");
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| Error::State {
                    path,
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::State { path, source: e }),
        }
    }

    /// Removes the sandbox's state directory; a missing one is fine.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::State {
                path: dir,
                source: e,
            }),
        }
    }

    /// Ids with a state file, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().join("state.json").exists())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}
