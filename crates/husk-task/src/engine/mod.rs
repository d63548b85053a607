//! The container engine: every container (and its exec processes) of the
//! one pod this shim serves. One file per verb; state guards on the phase
//! types. Exits are watched through pidfds (the shim is the subreaper),
//! recorded after the process's output has drained, and published in
//! order after the event that started the process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use husk_sandbox::Host;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::events::{EventSink, TaskEvent};
use crate::oom::OomWatch;
use crate::runtime::{OciRuntime, RuntimeFactory};
use crate::spec::ContainerSpec;
use crate::stdio::ProcessIo;
use crate::types::{Exit, IoPaths, ProcessState, TaskStatus};

mod control;
mod create;
mod delete;
mod kill;
mod query;
mod start;

pub use delete::{reclaim, reclaim_all, TaskRecord, TASK_RECORD};

/// How long the engine waits for a SIGKILLed process to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// A process's life: Created (runtime created it, or Exec registered it),
/// Running, Stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Created,
    Running,
    Stopped,
}

impl Phase {
    pub(crate) fn can_start(self) -> bool {
        self == Phase::Created
    }
    pub(crate) fn can_delete(self) -> bool {
        self != Phase::Running
    }
    pub(crate) fn can_signal(self) -> bool {
        self != Phase::Stopped
    }
}

pub(crate) struct ProcSt {
    pub phase: Phase,
    pub pid: u32,
}

/// An init or exec process.
pub(crate) struct Proc {
    /// Empty for the container's init.
    pub exec_id: String,
    pub io: IoPaths,
    pub st: Mutex<ProcSt>,
    pub exit: watch::Sender<Option<Exit>>,
    pub pio: tokio::sync::Mutex<Option<ProcessIo>>,
    /// Held while the start event is published and while the exit event
    /// is, so an exit is never told before the start.
    pub order: tokio::sync::Mutex<()>,
    /// An exec's OCI process JSON.
    pub process: Vec<u8>,
}

impl Proc {
    pub(crate) fn new(exec_id: &str, io: IoPaths, process: Vec<u8>) -> Arc<Proc> {
        Arc::new(Proc {
            exec_id: exec_id.to_string(),
            io,
            st: Mutex::new(ProcSt {
                phase: Phase::Created,
                pid: 0,
            }),
            exit: watch::channel(None).0,
            pio: tokio::sync::Mutex::new(None),
            order: tokio::sync::Mutex::new(()),
            process,
        })
    }

    pub(crate) fn st(&self) -> MutexGuard<'_, ProcSt> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn phase(&self) -> Phase {
        self.st().phase
    }

    pub(crate) fn pid(&self) -> u32 {
        self.st().pid
    }

    pub(crate) async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        let got = rx.wait_for(|e| e.is_some()).await.ok().and_then(|e| *e);
        got.unwrap_or(Exit {
            status: 255,
            at: SystemTime::now(),
        })
    }
}

pub(crate) struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: Arc<dyn OciRuntime>,
    pub spec: ContainerSpec,
    /// Rootfs mounts the engine made, to take off at delete.
    pub mounts: Vec<PathBuf>,
    pub init: Arc<Proc>,
    pub execs: Mutex<HashMap<String, Arc<Proc>>>,
    pub paused: AtomicBool,
    /// Serialises the verbs that change the container.
    pub ops: tokio::sync::Mutex<()>,
    pub oom: Mutex<Option<OomWatch>>,
}

impl Container {
    pub(crate) fn execs(&self) -> MutexGuard<'_, HashMap<String, Arc<Proc>>> {
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The init process, or the named exec.
    pub(crate) fn process(&self, exec_id: &str) -> Result<Arc<Proc>> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        self.execs()
            .get(exec_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("{}/{exec_id}", self.id)))
    }

    pub(crate) fn status(&self, p: &Proc) -> TaskStatus {
        match p.phase() {
            Phase::Created => TaskStatus::Created,
            Phase::Stopped => TaskStatus::Stopped,
            Phase::Running if p.exec_id.is_empty() && self.paused.load(Ordering::SeqCst) => {
                TaskStatus::Paused
            }
            Phase::Running => TaskStatus::Running,
        }
    }

    pub(crate) fn state(&self, p: &Proc) -> ProcessState {
        ProcessState {
            id: self.id.clone(),
            exec_id: p.exec_id.clone(),
            bundle: self.bundle.clone(),
            pid: p.pid(),
            status: self.status(p),
            io: p.io.clone(),
            exit: *p.exit.borrow(),
        }
    }
}

enum Slot {
    Creating,
    Ready(Arc<Container>),
}

/// The engine for the containers of one shim's pod.
pub struct Tasks {
    host: Host,
    runtimes: Arc<dyn RuntimeFactory>,
    events: Arc<dyn EventSink>,
    namespace: String,
    /// Where console sockets are bound (short, for sun_path).
    console_dir: PathBuf,
    slots: Mutex<HashMap<String, Slot>>,
    seq: AtomicU64,
    /// A directory holding every live container's record (one file per
    /// container), so that `shim delete` of the pod can reclaim them
    /// after the shim died: containerd 2.1 runs it for the pod only.
    registry: Option<PathBuf>,
}

impl Tasks {
    pub fn new(
        host: Host,
        runtimes: Arc<dyn RuntimeFactory>,
        events: Arc<dyn EventSink>,
        namespace: &str,
        console_dir: PathBuf,
    ) -> Self {
        Tasks {
            host,
            runtimes,
            events,
            namespace: namespace.to_string(),
            console_dir,
            slots: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            registry: None,
        }
    }

    /// Keeps the registry of live containers in `dir` (see `reclaim_all`).
    pub fn with_registry(mut self, dir: PathBuf) -> Self {
        self.registry = Some(dir);
        self
    }

    /// Records a live container in the registry: its whole record, since
    /// containerd may remove the bundle before the pod's `delete` runs.
    fn register(&self, record: &TaskRecord) -> Result<()> {
        let Some(dir) = &self.registry else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::invalid(format!("{}: {e}", dir.display())))?;
        record.save_as(&dir.join(&record.id))
    }

    fn unregister(&self, id: &str) {
        if let Some(dir) = &self.registry {
            let _ = std::fs::remove_file(dir.join(id));
        }
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, id: &str) -> Result<Arc<Container>> {
        husk_sandbox::id::validate(id)?;
        match self.slots().get(id) {
            Some(Slot::Ready(c)) => Ok(c.clone()),
            Some(Slot::Creating) => Err(Error::precondition(id, "is still being created")),
            None => Err(Error::NotFound(id.to_string())),
        }
    }

    /// How many containers this engine holds (created and not deleted).
    pub fn len(&self) -> usize {
        self.slots().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn ids(&self) -> Vec<String> {
        self.slots().keys().cloned().collect()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.slots().contains_key(id)
    }

    /// Records the exit of `p` once its output has drained, then tells
    /// waiters and containerd.
    fn watch_exit(&self, c: &Arc<Container>, p: &Arc<Proc>, exit: BoxFuture<'static, u32>) {
        let (c, p) = (c.clone(), p.clone());
        let events = self.events.clone();
        let host = self.host.clone();
        tokio::spawn(async move {
            let status = exit.await;
            let _order = p.order.lock().await;
            if let Some(mut pio) = p.pio.lock().await.take() {
                pio.drain().await;
            }
            let init = p.exec_id.is_empty();
            if init {
                // Without a PID namespace of its own, the container's other
                // processes (execs) would outlive it: end them too.
                if !c.spec.own_pid_ns {
                    if let Some(cg) = &c.spec.cgroup {
                        let _ = host.cgroups.kill_all(cg, libc::SIGKILL);
                    }
                }
                let oom = c
                    .oom
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_some_and(|w| w.take_new());
                if oom {
                    events.publish(TaskEvent::Oom {
                        container_id: c.id.clone(),
                    });
                }
            }
            let at = SystemTime::now();
            let pid = {
                let mut st = p.st();
                st.phase = Phase::Stopped;
                st.pid
            };
            p.exit.send_replace(Some(Exit { status, at }));
            events.publish(TaskEvent::Exit {
                container_id: c.id.clone(),
                id: if init {
                    c.id.clone()
                } else {
                    p.exec_id.clone()
                },
                pid,
                status,
                at,
            });
        });
    }

    fn console_name(&self) -> String {
        format!(
            "{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::SeqCst)
        )
    }
}

/// Reads a pid file the runtime wrote.
pub(crate) fn read_pid(path: &Path) -> std::result::Result<u32, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{}: no pid in {s:?}", path.display()))
}
