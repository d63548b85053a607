//! A recording, in-memory OS for tests without root: processes are
//! entries in a table, cgroups are sets of pids, mounts are a list.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::watch;

use super::{CgroupVersion, Cgroups, HolderSpec, Mounts, Processes};
use crate::config::Mount;
use crate::error::OsError;
use crate::metrics::{CgroupStats, Pids, V1Stats};

#[derive(Debug)]
struct Proc {
    alive: bool,
    ignores_term: bool,
    exit: watch::Sender<Option<u32>>,
    start: u64,
}

#[derive(Debug, Default)]
struct State {
    next_pid: u32,
    procs: HashMap<u32, Proc>,
    cgroups: BTreeMap<PathBuf, BTreeSet<u32>>,
    mounts: Vec<PathBuf>,
    calls: Vec<String>,
    fail: BTreeSet<&'static str>,
    holders: Vec<HolderSpec>,
    netns_ok: BTreeSet<PathBuf>,
}

/// One fake host implementing all three OS traits over shared state.
#[derive(Clone, Default)]
pub struct FakeOs {
    st: Arc<Mutex<State>>,
}

fn injected(op: &'static str) -> OsError {
    OsError::sys(op, io::Error::from_raw_os_error(libc::EIO))
}

impl FakeOs {
    pub fn new() -> Self {
        let os = FakeOs::default();
        os.st().next_pid = 1000;
        os
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next call of `op` fail with EIO ("cgroup.create",
    /// "mount", "mount_shm", "spawn", …).
    pub fn fail_next(&self, op: &'static str) {
        self.st().fail.insert(op);
    }

    fn check(&self, st: &mut State, op: &'static str) -> Result<(), OsError> {
        st.calls.push(op.to_string());
        if st.fail.remove(op) {
            return Err(injected(op));
        }
        Ok(())
    }

    /// Accepts `path` as a network namespace file.
    pub fn add_netns(&self, path: impl Into<PathBuf>) {
        self.st().netns_ok.insert(path.into());
    }

    /// Starts a process in cgroup `rel` that ignores SIGTERM.
    pub fn add_stubborn(&self, rel: &Path) -> u32 {
        let mut st = self.st();
        let pid = new_proc(&mut st, true);
        st.cgroups.entry(rel.to_path_buf()).or_default().insert(pid);
        pid
    }

    /// Starts a process in cgroup `rel` that exits on SIGTERM.
    pub fn add_process(&self, rel: &Path) -> u32 {
        let mut st = self.st();
        let pid = new_proc(&mut st, false);
        st.cgroups.entry(rel.to_path_buf()).or_default().insert(pid);
        pid
    }

    /// Ends a process with `status`, as if it exited on its own.
    pub fn exit_with(&self, pid: u32, status: u32) {
        let mut st = self.st();
        exit_proc(&mut st, pid, status);
    }

    /// Kills a process from outside, as `kill -9` would.
    pub fn kill_from_outside(&self, pid: u32) {
        let mut st = self.st();
        exit_proc(&mut st, pid, 137);
    }

    pub fn alive(&self, pid: u32) -> bool {
        self.st().procs.get(&pid).is_some_and(|p| p.alive)
    }

    pub fn live_pids(&self) -> Vec<u32> {
        self.st()
            .procs
            .iter()
            .filter(|(_, p)| p.alive)
            .map(|(k, _)| *k)
            .collect()
    }

    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.st().cgroups.keys().cloned().collect()
    }

    pub fn mounted(&self) -> Vec<PathBuf> {
        self.st().mounts.clone()
    }

    pub fn holders(&self) -> Vec<HolderSpec> {
        self.st().holders.clone()
    }

    pub fn calls(&self) -> Vec<String> {
        self.st().calls.clone()
    }
}

fn new_proc(st: &mut State, ignores_term: bool) -> u32 {
    st.next_pid += 1;
    let pid = st.next_pid;
    st.procs.insert(
        pid,
        Proc {
            alive: true,
            ignores_term,
            exit: watch::channel(None).0,
            start: u64::from(pid) * 7,
        },
    );
    pid
}

fn exit_proc(st: &mut State, pid: u32, status: u32) {
    if let Some(p) = st.procs.get_mut(&pid) {
        if p.alive {
            p.alive = false;
            p.exit.send_replace(Some(status));
        }
    }
    for set in st.cgroups.values_mut() {
        set.remove(&pid);
    }
}

fn deliver(st: &mut State, pid: u32, signal: i32) {
    let Some(p) = st.procs.get(&pid) else { return };
    if !p.alive {
        return;
    }
    match signal {
        libc::SIGKILL => exit_proc(st, pid, 128 + libc::SIGKILL as u32),
        libc::SIGTERM | libc::SIGINT if !p.ignores_term => exit_proc(st, pid, 0),
        _ => {}
    }
}

impl Cgroups for FakeOs {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn create(&self, rel: &Path) -> Result<Vec<PathBuf>, OsError> {
        let mut st = self.st();
        self.check(&mut st, "cgroup.create")?;
        st.cgroups.entry(rel.to_path_buf()).or_default();
        Ok(vec![rel.to_path_buf()])
    }

    fn join_files(&self, rel: &Path) -> Vec<PathBuf> {
        vec![rel.join("cgroup.procs")]
    }

    fn pids(&self, rel: &Path) -> Result<Vec<u32>, OsError> {
        Ok(self
            .st()
            .cgroups
            .get(rel)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default())
    }

    fn kill_all(&self, rel: &Path, signal: i32) -> Result<(), OsError> {
        let mut st = self.st();
        let pids: Vec<u32> = st
            .cgroups
            .get(rel)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for pid in pids {
            deliver(&mut st, pid, signal);
        }
        Ok(())
    }

    fn remove(&self, created: &[PathBuf]) -> Result<(), OsError> {
        let mut st = self.st();
        self.check(&mut st, "cgroup.remove")?;
        for d in created {
            if st.cgroups.get(d).is_some_and(|s| !s.is_empty()) {
                return Err(OsError::path(
                    "rmdir cgroup",
                    d,
                    io::Error::from_raw_os_error(libc::EBUSY),
                ));
            }
            st.cgroups.remove(d);
        }
        Ok(())
    }

    fn stats(&self, rel: &Path) -> Result<CgroupStats, OsError> {
        let mut st = self.st();
        self.check(&mut st, "cgroup.stats")?;
        let n = st.cgroups.get(rel).map(|s| s.len()).unwrap_or(0) as u64;
        Ok(CgroupStats::V1(V1Stats {
            pids: Pids {
                current: n,
                limit: 0,
            },
            ..Default::default()
        }))
    }

    fn host_paths(&self, rel: &Path) -> Vec<PathBuf> {
        vec![rel.to_path_buf()]
    }
}

#[async_trait::async_trait]
impl Processes for FakeOs {
    async fn spawn_holder(
        &self,
        spec: &HolderSpec,
    ) -> Result<(u32, BoxFuture<'static, u32>), OsError> {
        let mut st = self.st();
        self.check(&mut st, "spawn")?;
        st.holders.push(spec.clone());
        let pid = new_proc(&mut st, false);
        if let Some(f) = spec.cgroup_join.first() {
            let rel = f.parent().map(Path::to_path_buf).unwrap_or_default();
            st.cgroups.entry(rel).or_default().insert(pid);
        }
        let mut rx = st.procs[&pid].exit.subscribe();
        let fut = async move {
            match rx.wait_for(|v| v.is_some()).await {
                Ok(v) => v.unwrap_or(255),
                Err(_) => 255,
            }
        };
        Ok((pid, fut.boxed()))
    }

    fn watch_child(&self, pid: u32) -> Result<BoxFuture<'static, u32>, OsError> {
        let st = self.st();
        let p = st.procs.get(&pid).ok_or_else(|| injected("pidfd_open"))?;
        let mut rx = p.exit.subscribe();
        Ok(async move {
            match rx.wait_for(|v| v.is_some()).await {
                Ok(v) => v.unwrap_or(255),
                Err(_) => 255,
            }
        }
        .boxed())
    }

    fn watch_foreign(&self, pid: u32) -> Result<BoxFuture<'static, ()>, OsError> {
        let st = self.st();
        let p = st.procs.get(&pid).ok_or_else(|| injected("pidfd_open"))?;
        let mut rx = p.exit.subscribe();
        Ok(async move {
            let _ = rx.wait_for(|v| v.is_some()).await;
        }
        .boxed())
    }

    fn signal(&self, pid: u32, signal: i32) -> Result<(), OsError> {
        let mut st = self.st();
        deliver(&mut st, pid, signal);
        Ok(())
    }

    fn start_time(&self, pid: u32) -> Option<u64> {
        self.st()
            .procs
            .get(&pid)
            .filter(|p| p.alive)
            .map(|p| p.start)
    }

    fn state(&self, pid: u32) -> Option<char> {
        self.st().procs.get(&pid).filter(|p| p.alive).map(|_| 'S')
    }
}

impl Mounts for FakeOs {
    fn mount(&self, _m: &Mount, target: &Path) -> Result<(), OsError> {
        let mut st = self.st();
        self.check(&mut st, "mount")?;
        st.mounts.push(target.to_path_buf());
        Ok(())
    }

    fn mount_shm(&self, target: &Path) -> Result<(), OsError> {
        let mut st = self.st();
        self.check(&mut st, "mount_shm")?;
        st.mounts.push(target.to_path_buf());
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), OsError> {
        let mut st = self.st();
        self.check(&mut st, "unmount")?;
        st.mounts.retain(|m| m != target);
        Ok(())
    }

    fn check_netns(&self, path: &Path) -> Result<(), OsError> {
        if self.st().netns_ok.contains(path) {
            Ok(())
        } else {
            Err(OsError::path(
                "not a network namespace",
                path,
                io::Error::from_raw_os_error(libc::EINVAL),
            ))
        }
    }
}
