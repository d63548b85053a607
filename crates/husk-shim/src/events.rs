//! Publishing task events to containerd, as its own shims do: ttrpc
//! `containerd.services.events.ttrpc.v1.Events/Forward` on the
//! `TTRPC_ADDRESS` containerd gives the shim. One task sends them one at a
//! time, in the order they happened, retrying while containerd is away (a
//! restart), so none is lost or reordered.

use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim_async::{Client, EventsClient};
use husk_task::{EventSink, TaskEvent};
use tokio::sync::mpsc;

use crate::convert;

/// How long one event is retried before it is given up (and logged).
const GIVE_UP: Duration = Duration::from_secs(300);

pub struct Publisher {
    tx: mpsc::UnboundedSender<TaskEvent>,
}

impl Publisher {
    /// Starts the sender task for `address` (containerd's TTRPC_ADDRESS).
    pub fn start(address: String, namespace: String) -> Publisher {
        // containerd passes a bare socket path; ttrpc wants a URI.
        let address = if address.contains("://") {
            address
        } else {
            format!("unix://{address}")
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_all(address, namespace, rx));
        Publisher { tx }
    }
}

impl EventSink for Publisher {
    fn publish(&self, ev: TaskEvent) {
        tracing::debug!(topic = ev.topic(), "event");
        let _ = self.tx.send(ev);
    }
}

async fn send_all(address: String, namespace: String, mut rx: mpsc::UnboundedReceiver<TaskEvent>) {
    let mut client: Option<EventsClient> = None;
    while let Some(ev) = rx.recv().await {
        let topic = ev.topic();
        let req = match envelope(&namespace, &ev) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(topic, error = %e, "event not encodable");
                continue;
            }
        };
        let t0 = std::time::Instant::now();
        let mut delay = Duration::from_millis(10);
        loop {
            if client.is_none() {
                match Client::connect(&address).await {
                    Ok(c) => client = Some(EventsClient::new(c)),
                    Err(e) => {
                        tracing::info!(topic, %address, error = %e, "connecting for events; retrying")
                    }
                }
            }
            if let Some(c) = &client {
                let ctx = ttrpc::context::with_timeout(Duration::from_secs(5).as_nanos() as i64);
                match c.forward(ctx, &req).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::info!(topic, error = %e, "forwarding event; retrying");
                        client = None;
                    }
                }
            }
            if t0.elapsed() > GIVE_UP {
                tracing::warn!(topic, "containerd unreachable; event dropped");
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

fn any<M: Message>(type_url: &str, m: &M) -> Result<Any, protobuf::Error> {
    let mut a = Any::new();
    a.type_url = type_url.to_string();
    a.value = m.write_to_bytes()?;
    Ok(a)
}

fn mounts(ms: &[husk_sandbox::Mount]) -> Vec<api::Mount> {
    ms.iter()
        .map(|m| {
            let mut pm = api::Mount::new();
            pm.type_ = m.kind.clone();
            pm.source = m.source.clone();
            pm.target = m.target.clone();
            pm.options = m.options.clone();
            pm
        })
        .collect()
}

/// TaskExit and TaskDelete carry the same fields.
macro_rules! exit_like {
    ($ty:ty, $url:expr, $cid:expr, $id:expr, $pid:expr, $status:expr, $at:expr) => {{
        let mut m = <$ty>::new();
        m.container_id = $cid.clone();
        m.id = $id.clone();
        m.pid = *$pid;
        m.exit_status = *$status;
        m.exited_at = MessageField::some(convert::timestamp(*$at));
        any($url, &m)?
    }};
}

/// The ForwardRequest for one event.
pub fn envelope(namespace: &str, e: &TaskEvent) -> Result<api::ForwardRequest, protobuf::Error> {
    let ts = |t| MessageField::some(convert::timestamp(t));
    let event = match e {
        TaskEvent::Create {
            container_id,
            bundle,
            rootfs,
            io,
            pid,
        } => {
            let mut m = ev::TaskCreate::new();
            m.container_id = container_id.clone();
            m.bundle = bundle.clone();
            m.rootfs = mounts(rootfs);
            let tio = m.io.mut_or_insert_default();
            tio.stdin = io.stdin.clone();
            tio.stdout = io.stdout.clone();
            tio.stderr = io.stderr.clone();
            tio.terminal = io.terminal;
            m.pid = *pid;
            any("containerd.events.TaskCreate", &m)?
        }
        TaskEvent::Start { container_id, pid } => {
            let mut m = ev::TaskStart::new();
            m.container_id = container_id.clone();
            m.pid = *pid;
            any("containerd.events.TaskStart", &m)?
        }
        TaskEvent::Exit {
            container_id,
            id,
            pid,
            status,
            at,
        } => exit_like!(
            ev::TaskExit,
            "containerd.events.TaskExit",
            container_id,
            id,
            pid,
            status,
            at
        ),
        TaskEvent::Delete {
            container_id,
            id,
            pid,
            status,
            at,
        } => exit_like!(
            ev::TaskDelete,
            "containerd.events.TaskDelete",
            container_id,
            id,
            pid,
            status,
            at
        ),
        TaskEvent::ExecAdded {
            container_id,
            exec_id,
        } => {
            let mut m = ev::TaskExecAdded::new();
            m.container_id = container_id.clone();
            m.exec_id = exec_id.clone();
            any("containerd.events.TaskExecAdded", &m)?
        }
        TaskEvent::ExecStarted {
            container_id,
            exec_id,
            pid,
        } => {
            let mut m = ev::TaskExecStarted::new();
            m.container_id = container_id.clone();
            m.exec_id = exec_id.clone();
            m.pid = *pid;
            any("containerd.events.TaskExecStarted", &m)?
        }
        TaskEvent::Paused { container_id } => {
            let mut m = ev::TaskPaused::new();
            m.container_id = container_id.clone();
            any("containerd.events.TaskPaused", &m)?
        }
        TaskEvent::Resumed { container_id } => {
            let mut m = ev::TaskResumed::new();
            m.container_id = container_id.clone();
            any("containerd.events.TaskResumed", &m)?
        }
        TaskEvent::Oom { container_id } => {
            let mut m = ev::TaskOOM::new();
            m.container_id = container_id.clone();
            any("containerd.events.TaskOOM", &m)?
        }
    };
    let mut env = Envelope::new();
    env.timestamp = ts(std::time::SystemTime::now());
    env.namespace = namespace.to_string();
    env.topic = e.topic().to_string();
    env.event = MessageField::some(event);
    let mut req = api::ForwardRequest::new();
    req.envelope = MessageField::some(env);
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_envelope() {
        let e = TaskEvent::Exit {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 42,
            status: 137,
            at: std::time::SystemTime::now(),
        };
        let req = envelope("k8s.io", &e).unwrap();
        let env = req.envelope.unwrap();
        assert_eq!(env.topic, "/tasks/exit");
        assert_eq!(env.namespace, "k8s.io");
        let any = env.event.unwrap();
        assert_eq!(any.type_url, "containerd.events.TaskExit");
        let m = ev::TaskExit::parse_from_bytes(&any.value).unwrap();
        assert_eq!(
            (m.pid, m.exit_status, m.container_id.as_str()),
            (42, 137, "c1")
        );
    }
}
