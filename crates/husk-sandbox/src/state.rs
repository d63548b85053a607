//! A sandbox's persisted record and the store that keeps it on disk.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
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

/// Decodes and checks the record of sandbox `id`.
pub fn decode(data: &[u8], id: &str) -> Result<Record, String> {
    let rec: Record = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    rec.check(id)?;
    Ok(rec)
}

/// Whether `p` is absolute and has no `.` or `..` in it.
fn plain_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

impl Record {
    /// Cleanup acts on the record's paths as root, so a record is used only
    /// if it is one husk could have written for `id`: its own id; plain
    /// absolute paths; mounts and files inside its bundle; a cgroup ending
    /// in the id; made cgroup directories that are ancestors-or-self of it.
    pub fn check(&self, id: &str) -> Result<(), String> {
        if self.id != id {
            return Err(format!("record is for {:?}, not {id:?}", self.id));
        }
        if !plain_absolute(&self.bundle) {
            return Err(format!(
                "bundle {:?} is not a plain absolute path",
                self.bundle
            ));
        }
        for p in self.mounts.iter().chain(&self.files) {
            if !plain_absolute(p) || !p.starts_with(&self.bundle) || *p == self.bundle {
                return Err(format!("{p:?} is not inside the bundle"));
            }
        }
        if !plain_absolute(&self.cgroup) || self.cgroup.file_name() != Some(id.as_ref()) {
            return Err(format!("cgroup {:?} is not the sandbox's", self.cgroup));
        }
        let rel: Vec<_> = self.cgroup.components().skip(1).collect();
        for d in &self.cgroup_created {
            // <hierarchy mount point>/<first k components of cgroup>, k ≥ 1.
            let comps: Vec<_> = d.components().collect();
            let ok = plain_absolute(d)
                && (1..=rel.len()).any(|k| comps.len() > k && comps[comps.len() - k..] == rel[..k]);
            if !ok {
                return Err(format!("cgroup directory {d:?} is not the sandbox's"));
            }
        }
        if self.phase == Phase::Running && self.pid == 0 {
            return Err("a running sandbox without a holder pid".into());
        }
        Ok(())
    }
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

    /// The record of `id`; `Ok(None)` when there is none. A record that
    /// cannot be decoded or fails [`Record::check`] is an `Error::State`
    /// of kind `InvalidData`.
    pub fn load(&self, id: &str) -> Result<Option<Record>, Error> {
        let path = self.dir(id).join("state.json");
        match fs::read(&path) {
            Ok(data) => decode(&data, id).map(Some).map_err(|e| Error::State {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        let b = PathBuf::from("/run/c/io.containerd.runtime.v2.task/k8s.io/abc");
        Record {
            id: "abc".into(),
            network: Network::New,
            pod: PodConfig::default(),
            hostname: "h".into(),
            rootfs: vec![],
            cgroup: "/husk/abc".into(),
            cgroup_version: CgroupVersion::V1,
            cgroup_created: vec![
                "/sys/fs/cgroup/memory/husk".into(),
                "/sys/fs/cgroup/memory/husk/abc".into(),
            ],
            mounts: vec![b.join("shm")],
            files: vec![b.join("hostname"), b.join("shm")],
            bundle: b,
            phase: Phase::Running,
            pid: 7,
            pid_start: 1,
            created_at: 1,
            exited_at: None,
            exit_status: None,
        }
    }

    #[test]
    fn a_record_husk_writes_decodes() {
        let r = record();
        assert_eq!(decode(&serde_json::to_vec(&r).unwrap(), "abc").unwrap(), r);
    }

    #[test]
    fn records_that_name_what_the_sandbox_does_not_own_are_refused() {
        type Damage = Box<dyn Fn(&mut Record)>;
        let bad: Vec<(&str, Damage)> = vec![
            ("another id", Box::new(|r| r.id = "xyz".into())),
            ("relative bundle", Box::new(|r| r.bundle = "run/x".into())),
            (
                "file outside",
                Box::new(|r| r.files.push("/etc/passwd".into())),
            ),
            (
                "dot-dot file",
                Box::new(|r| r.files.push(r.bundle.join("../../etc"))),
            ),
            (
                "the bundle itself",
                Box::new(|r| r.mounts.push(r.bundle.clone())),
            ),
            (
                "cgroup of another",
                Box::new(|r| r.cgroup = "/husk/xyz".into()),
            ),
            (
                "unrelated cgroup dir",
                Box::new(|r| r.cgroup_created.push("/sys/fs/cgroup/memory".into())),
            ),
            (
                "dot-dot cgroup dir",
                Box::new(|r| r.cgroup_created.push("/sys/fs/cgroup/../husk/abc".into())),
            ),
            ("running without pid", Box::new(|r| r.pid = 0)),
        ];
        for (what, f) in bad {
            let mut r = record();
            f(&mut r);
            let err = decode(&serde_json::to_vec(&r).unwrap(), "abc");
            assert!(err.is_err(), "{what} was accepted");
        }
        assert!(decode(b"{\"id\":", "abc").is_err());
        assert!(decode(b"", "abc").is_err());
    }
}
