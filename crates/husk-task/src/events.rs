//! The event sink seam: what the engine tells containerd happened. The
//! shim turns these into `containerd.events.Task*` messages and forwards
//! them in order.

use std::time::SystemTime;

use husk_sandbox::Mount;

use crate::types::IoPaths;

#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    Create {
        container_id: String,
        bundle: String,
        rootfs: Vec<Mount>,
        io: IoPaths,
        pid: u32,
    },
    Start {
        container_id: String,
        pid: u32,
    },
    Exit {
        container_id: String,
        /// The exec id, or the container id for its init process.
        id: String,
        pid: u32,
        status: u32,
        at: SystemTime,
    },
    Delete {
        container_id: String,
        id: String,
        pid: u32,
        status: u32,
        at: SystemTime,
    },
    ExecAdded {
        container_id: String,
        exec_id: String,
    },
    ExecStarted {
        container_id: String,
        exec_id: String,
        pid: u32,
    },
    Paused {
        container_id: String,
    },
    Resumed {
        container_id: String,
    },
    Oom {
        container_id: String,
    },
}

impl TaskEvent {
    pub fn topic(&self) -> &'static str {
        match self {
            TaskEvent::Create { .. } => "/tasks/create",
            TaskEvent::Start { .. } => "/tasks/start",
            TaskEvent::Exit { .. } => "/tasks/exit",
            TaskEvent::Delete { .. } => "/tasks/delete",
            TaskEvent::ExecAdded { .. } => "/tasks/exec-added",
            TaskEvent::ExecStarted { .. } => "/tasks/exec-started",
            TaskEvent::Paused { .. } => "/tasks/paused",
            TaskEvent::Resumed { .. } => "/tasks/resumed",
            TaskEvent::Oom { .. } => "/tasks/oom",
        }
    }
}

/// Takes events in the order they happen; must not block.
pub trait EventSink: Send + Sync {
    fn publish(&self, ev: TaskEvent);
}

/// Drops every event (huskctl runs shims with no containerd to tell).
pub struct NoEvents;

impl EventSink for NoEvents {
    fn publish(&self, _ev: TaskEvent) {}
}

/// Keeps every event, for tests.
#[derive(Default)]
pub struct RecordedEvents(pub std::sync::Mutex<Vec<TaskEvent>>);

impl RecordedEvents {
    pub fn topics(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(TaskEvent::topic)
            .collect()
    }

    pub fn all(&self) -> Vec<TaskEvent> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl EventSink for RecordedEvents {
    fn publish(&self, ev: TaskEvent) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(ev);
    }
}
