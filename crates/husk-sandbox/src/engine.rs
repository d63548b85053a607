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

/// Undo steps of a half-done CreateSandbox, run in reverse on failure.
enum Undo {
    Cgroup(Vec<PathBuf>),
    Mount(PathBuf),
    File(PathBuf),
    Dir(PathBuf),
    State(String),
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

    // ---- CreateSandbox -------------------------------------------------

    pub async fn create(&self, req: CreateRequest) -> Result<()> {
        crate::id::validate(&req.id)?;
        let network = self.validate(&req)?;
        let cgroup_rel = cgroup::pod_path(&req.pod.cgroup_parent, &req.id)?;
        {
            let mut slots = self.slots();
            if slots.contains_key(&req.id) {
                return Err(Error::AlreadyExists(req.id.clone()));
            }
            slots.insert(req.id.clone(), Slot::Creating);
        }
        let result = self.build(&req, network, cgroup_rel);
        let mut slots = self.slots();
        match result {
            Ok(rec) => {
                slots.insert(req.id.clone(), Slot::Ready(Sandbox::new(rec)));
                self.gone
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&req.id);
                Ok(())
            }
            Err(e) => {
                slots.remove(&req.id);
                Err(e)
            }
        }
    }

    fn validate(&self, req: &CreateRequest) -> Result<Network> {
        let bundle = &req.bundle;
        if !bundle.is_absolute() {
            return Err(Error::invalid(format!(
                "bundle_path {} must be absolute",
                bundle.display()
            )));
        }
        if !bundle.is_dir() {
            return Err(Error::invalid(format!(
                "bundle_path {} is not a directory",
                bundle.display()
            )));
        }
        let network = req.network()?;
        if let Network::Join(p) = &network {
            if !p.is_absolute() {
                return Err(Error::invalid(format!(
                    "netns_path {} must be absolute",
                    p.display()
                )));
            }
            self.host
                .mounts
                .check_netns(p)
                .map_err(|e| Error::invalid(format!("netns_path: {e}: {}", source_msg(&e))))?;
        }
        check_hostname(&req.pod.hostname)?;
        if network == Network::Host && !req.pod.hostname.is_empty() {
            // The pod shares the host's UTS namespace; setting a name would rename the host.
            tracing::debug!(id = %req.id, "hostname ignored for a host-network pod");
        }
        if let Some(dns) = &req.pod.dns {
            podfiles::check_dns(dns)?;
        }
        for (k, v) in &req.pod.sysctls {
            check_sysctl(k, v, &network)?;
        }
        for m in &req.rootfs {
            if m.kind.is_empty() || m.source.is_empty() {
                return Err(Error::invalid("rootfs mount needs a type and a source"));
            }
            if !safe_relative(&m.target) {
                return Err(Error::invalid(format!(
                    "rootfs mount target {:?} must stay inside the rootfs",
                    m.target
                )));
            }
        }
        Ok(network)
    }

    /// Makes the sandbox's cgroup, mounts and pod files, and persists its
    /// record. On failure everything made so far is undone.
    fn build(&self, req: &CreateRequest, network: Network, cgroup_rel: PathBuf) -> Result<Record> {
        let mut undo = Vec::new();
        let result = self.build_steps(req, network, cgroup_rel, &mut undo);
        match result {
            Ok(rec) => Ok(rec),
            Err(primary) => match self.run_undo(undo) {
                Ok(()) => Err(primary),
                Err(cleanup) => Err(Error::CleanupFailed {
                    id: req.id.clone(),
                    action: "create",
                    primary: Box::new(primary),
                    cleanup,
                }),
            },
        }
    }

    fn build_steps(
        &self,
        req: &CreateRequest,
        network: Network,
        cgroup_rel: PathBuf,
        undo: &mut Vec<Undo>,
    ) -> Result<Record> {
        let id = req.id.as_str();
        let created = self
            .host
            .cgroups
            .create(&cgroup_rel)
            .map_err(Error::os(id, "create pod cgroup"))?;
        undo.push(Undo::Cgroup(created.clone()));

        let mut rec = Record {
            id: id.to_string(),
            bundle: req.bundle.clone(),
            hostname: podfiles::hostname(&req.pod, id, &network),
            network,
            pod: req.pod.clone(),
            rootfs: req.rootfs.clone(),
            cgroup: cgroup_rel,
            cgroup_version: self.host.cgroups.version(),
            cgroup_created: created,
            mounts: Vec::new(),
            files: Vec::new(),
            phase: Phase::Created,
            pid: 0,
            pid_start: 0,
            created_at: now_nanos(),
            exited_at: None,
            exit_status: None,
        };

        if !req.rootfs.is_empty() {
            let rootfs = req.bundle.join("rootfs");
            if make_dir(&rootfs).map_err(|e| {
                Error::os(id, "create rootfs dir")(OsError::path("mkdir", &rootfs, e))
            })? {
                undo.push(Undo::Dir(rootfs.clone()));
                rec.files.push(rootfs.clone());
            }
            for m in &req.rootfs {
                let target = rootfs.join(&m.target);
                self.host
                    .mounts
                    .mount(m, &target)
                    .map_err(Error::os(id, "mount rootfs"))?;
                undo.push(Undo::Mount(target.clone()));
                rec.mounts.push(target);
            }
        }

        let files = [
            ("hostname", format!("{}\n", rec.hostname)),
            ("hosts", podfiles::hosts(&rec.network)),
            ("resolv.conf", podfiles::resolv_conf(req.pod.dns.as_ref())),
        ];
        for (name, content) in files {
            let path = req.bundle.join(name);
            fs::write(&path, content.as_bytes())
                .map_err(|e| Error::os(id, "write pod file")(OsError::path("write", &path, e)))?;
            undo.push(Undo::File(path.clone()));
            rec.files.push(path);
        }

        if req.pod.ipc == NsMode::Pod {
            let shm = req.bundle.join("shm");
            if make_dir(&shm)
                .map_err(|e| Error::os(id, "create shm dir")(OsError::path("mkdir", &shm, e)))?
            {
                undo.push(Undo::Dir(shm.clone()));
                rec.files.push(shm.clone());
            }
            self.host
                .mounts
                .mount_shm(&shm)
                .map_err(Error::os(id, "mount shm"))?;
            undo.push(Undo::Mount(shm.clone()));
            rec.mounts.push(shm);
        }

        undo.push(Undo::State(id.to_string()));
        self.store.save(&rec)?;
        Ok(rec)
    }

    fn run_undo(&self, undo: Vec<Undo>) -> std::result::Result<(), OsError> {
        let mut first_err = None;
        for step in undo.into_iter().rev() {
            let r = match step {
                Undo::Cgroup(dirs) => self.host.cgroups.remove(&dirs),
                Undo::Mount(p) => self.host.mounts.unmount(&p),
                Undo::File(p) => remove_file(&p),
                Undo::Dir(p) => remove_dir(&p),
                Undo::State(id) => self
                    .store
                    .remove(&id)
                    .map_err(|e| OsError::sys("remove state", io::Error::other(e.to_string()))),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    // ---- StartSandbox --------------------------------------------------

    pub async fn start(&self, id: &str) -> Result<Started> {
        let sb = self.get(id)?;
        let _op = sb.ops.lock().await;
        let spec = {
            let rec = sb.rec();
            match rec.phase {
                Phase::Running => {
                    return Ok(Started {
                        pid: rec.pid,
                        created_at: to_time(rec.created_at),
                    })
                }
                Phase::Stopped => {
                    return Err(Error::precondition(id, "is stopped; it cannot start again"))
                }
                Phase::Created => {}
            }
            self.holder_spec(&rec)
        };
        let (pid, exit) = self
            .host
            .procs
            .spawn_holder(&spec)
            .map_err(Error::os(id, "start pod holder"))?;
        let pid_start = self.host.procs.start_time(pid).unwrap_or(0);
        let saved = {
            let mut rec = sb.rec();
            rec.phase = Phase::Running;
            rec.pid = pid;
            rec.pid_start = pid_start;
            let r = self.store.save(&rec);
            (r, to_time(rec.created_at))
        };
        self.watch_exit(&sb, exit);
        match saved {
            (Ok(()), created_at) => Ok(Started { pid, created_at }),
            (Err(e), _) => {
                // Without a record nobody could clean up after us: undo the start.
                let _ = self.host.procs.signal(pid, libc::SIGKILL);
                Err(e)
            }
        }
    }

    fn holder_spec(&self, rec: &Record) -> HolderSpec {
        let (join_netns, new_net) = match &rec.network {
            Network::Join(p) => (Some(p.clone()), false),
            Network::New => (None, true),
            Network::Host => (None, false),
        };
        let new_uts = rec.network != Network::Host;
        HolderSpec {
            join_netns,
            new_net,
            new_uts,
            new_ipc: rec.pod.ipc == NsMode::Pod,
            new_pid: rec.pod.pid == NsMode::Pod,
            hostname: new_uts.then(|| rec.hostname.clone()),
            sysctls: rec
                .pod
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cgroup_join: self.host.cgroups.join_files(&rec.cgroup),
            clone_into: self.host.cgroups.birth_cgroup(&rec.cgroup),
        }
    }

    /// Records the holder's exit when it happens, and wakes every waiter.
    fn watch_exit(&self, sb: &Arc<Sandbox>, exit: BoxFuture<'static, u32>) {
        let sb = sb.clone();
        let store = self.store.clone();
        tokio::spawn(async move {
            let status = exit.await;
            record_exit(&sb, &store, status);
        });
    }

    // ---- Platform ------------------------------------------------------

    pub fn platform(&self, id: &str) -> Result<Platform> {
        self.get(id)?;
        Ok(self.platform.clone())
    }

    // ---- StopSandbox ---------------------------------------------------

    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        let sb = self.get(id)?;
        let _op = sb.ops.lock().await;
        self.stop_locked(id, &sb, timeout).await
    }

    async fn stop_locked(&self, id: &str, sb: &Arc<Sandbox>, timeout: Duration) -> Result<()> {
        let (phase, pid, rel) = {
            let rec = sb.rec();
            (rec.phase, rec.pid, rec.cgroup.clone())
        };
        match phase {
            Phase::Created => {
                // Never started: nothing runs, but waiters must learn it is over.
                record_exit(sb, &self.store, 0);
                return Ok(());
            }
            Phase::Stopped => {}
            Phase::Running => {}
        }
        let cg = &self.host.cgroups;
        let procs = &self.host.procs;
        if phase == Phase::Running {
            procs
                .signal(pid, libc::SIGTERM)
                .map_err(Error::os(id, "signal holder"))?;
        }
        cg.kill_all(&rel, libc::SIGTERM)
            .map_err(Error::os(id, "signal pod processes"))?;
        let deadline = Instant::now() + timeout;
        let mut exit = sb.exit.subscribe();
        let cgroup_empty = || -> Result<bool> {
            Ok(cg
                .pids(&rel)
                .map_err(Error::os(id, "list pod processes"))?
                .is_empty())
        };
        if !timeout.is_zero() {
            // The holder's exit is the event that matters (it is the pod's
            // PID 1, so the kernel kills the rest of its PID namespace).
            let _ = tokio::time::timeout(timeout, exit.wait_for(|e| e.is_some())).await;
            while Instant::now() < deadline {
                if cgroup_empty()? && exit.borrow().is_some() {
                    return Ok(());
                }
                tokio::time::sleep(POLL).await;
            }
        }
        // Grace is over: kill whatever remains, including processes that
        // ignore SIGTERM or were moved into the pod cgroup.
        let kill_deadline = Instant::now() + KILL_GRACE;
        loop {
            let exited = exit.borrow().is_some();
            if phase == Phase::Running && !exited {
                procs
                    .signal(pid, libc::SIGKILL)
                    .map_err(Error::os(id, "kill holder"))?;
            }
            cg.kill_all(&rel, libc::SIGKILL)
                .map_err(Error::os(id, "kill pod processes"))?;
            if !exited {
                let _ = tokio::time::timeout(POLL * 5, exit.wait_for(|e| e.is_some())).await;
            }
            let empty = cgroup_empty()?;
            if empty && exit.borrow().is_some() {
                return Ok(());
            }
            if Instant::now() >= kill_deadline {
                return Err(Error::os(id, "stop")(OsError::Unkillable {
                    path: rel.clone(),
                }));
            }
            if !empty {
                tokio::time::sleep(POLL / 2).await;
            }
        }
    }

    // ---- WaitSandbox ---------------------------------------------------

    pub async fn wait(&self, id: &str) -> Result<ExitInfo> {
        let mut rx = self.get(id)?.exit.subscribe();
        let r = rx.wait_for(|e| e.is_some()).await;
        match r {
            Ok(v) => v.ok_or_else(|| Error::NotFound(id.to_string())),
            Err(_) => Err(Error::NotFound(id.to_string())),
        }
    }

    // ---- SandboxStatus -------------------------------------------------

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

    // ---- ShutdownSandbox -----------------------------------------------

    /// Stops the sandbox if needed and removes all it made. Returns how
    /// many sandboxes this engine still holds. An unknown id is NotFound,
    /// unless the engine holds nothing at all.
    pub async fn shutdown(&self, id: &str) -> Result<usize> {
        let sb = match self.get(id) {
            Ok(sb) => sb,
            // Already shut down (containerd retries), or never created
            // (containerd shuts down after a failed Create): nothing is left
            // to remove, so the shim may go.
            Err(Error::NotFound(_)) if self.is_empty() || self.was_shut_down(id) => {
                return Ok(self.len())
            }
            Err(e) => return Err(e),
        };
        let _op = sb.ops.lock().await;
        if !self.slots().contains_key(id) {
            return Ok(self.len()); // a concurrent Shutdown finished first
        }
        self.stop_locked(id, &sb, Duration::ZERO).await?;
        let rec = sb.rec().clone();
        teardown(&self.host, &rec).map_err(Error::os(id, "clean up"))?;
        self.store.remove(id)?;
        self.gone
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
        let mut slots = self.slots();
        slots.remove(id);
        Ok(slots.len())
    }

    // ---- SandboxMetrics ------------------------------------------------

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

    // ---- Restart -------------------------------------------------------

    /// Loads a persisted sandbox into a fresh engine (a restarted shim).
    /// A holder that still runs is adopted; its exit status cannot be
    /// observed any more and is reported as 255.
    pub fn restore(&self, id: &str) -> Result<bool> {
        let Some(mut rec) = self.store.load(id)? else {
            return Ok(false);
        };
        let mut adopt = None;
        if rec.phase == Phase::Running {
            let same = self.host.procs.start_time(rec.pid) == Some(rec.pid_start);
            match same.then(|| self.host.procs.watch_foreign(rec.pid)) {
                Some(Ok(fut)) => adopt = Some(fut),
                _ => {
                    rec.phase = Phase::Stopped;
                    rec.exit_status = Some(UNKNOWN_EXIT);
                    rec.exited_at = Some(now_nanos());
                    self.store.save(&rec)?;
                }
            }
        }
        let sb = Sandbox::new(rec);
        if let Some(fut) = adopt {
            let store = self.store.clone();
            let sb2 = sb.clone();
            tokio::spawn(async move {
                fut.await;
                record_exit(&sb2, &store, UNKNOWN_EXIT);
            });
        }
        self.slots().insert(id.to_string(), Slot::Ready(sb));
        Ok(true)
    }
}

/// Kills what is left of a sandbox and removes everything it made, from
/// its record alone. Used by Shutdown and by `shim delete` after a crash.
pub fn teardown(host: &Host, rec: &Record) -> std::result::Result<(), OsError> {
    let mut first_err: Option<OsError> = None;
    let mut keep = |r: std::result::Result<(), OsError>| {
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    };
    keep(host.cgroups.kill_all(&rec.cgroup, libc::SIGKILL));
    let deadline = Instant::now() + KILL_GRACE;
    while host
        .cgroups
        .pids(&rec.cgroup)
        .map(|p| !p.is_empty())
        .unwrap_or(false)
        && Instant::now() < deadline
    {
        let _ = host.cgroups.kill_all(&rec.cgroup, libc::SIGKILL);
        std::thread::sleep(POLL);
    }
    keep(host.cgroups.remove(&rec.cgroup_created));
    for m in rec.mounts.iter().rev() {
        keep(host.mounts.unmount(m));
    }
    for f in rec.files.iter().rev() {
        // Directories are removed only when empty: a mount that failed to
        // come off must never have its contents deleted.
        keep(remove_file(f).or_else(|_| remove_dir(f)));
    }
    first_err.map_or(Ok(()), Err)
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

fn source_msg(e: &OsError) -> String {
    std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn safe_relative(target: &str) -> bool {
    Path::new(target).components().all(|c| {
        matches!(
            c,
            Component::Normal(_) | Component::CurDir | Component::RootDir
        )
    })
}

/// Creates `dir`; returns whether it was created (false: it existed).
fn make_dir(dir: &Path) -> io::Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn remove_file(p: &Path) -> std::result::Result<(), OsError> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OsError::path("remove", p, e)),
    }
}

fn remove_dir(p: &Path) -> std::result::Result<(), OsError> {
    match fs::remove_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OsError::path("remove", p, e)),
    }
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
    pub fn fake(os: &crate::os::fake::FakeOs) -> Host {
        Host {
            cgroups: Arc::new(os.clone()),
            procs: Arc::new(os.clone()),
            mounts: Arc::new(os.clone()),
        }
    }
}
