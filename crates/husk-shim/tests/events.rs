//! The event publisher against a real ttrpc Events server, addressed as
//! containerd addresses it (TTRPC_ADDRESS is a bare socket path): every
//! event arrives, in order, including those published while the server
//! was not there yet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::shim_async::{create_events, Events};
use husk_shim::events::Publisher;
use husk_task::{EventSink, TaskEvent};
use ttrpc::r#async::TtrpcContext;

#[derive(Default)]
struct Sink(Mutex<Vec<(String, String, u32)>>);

#[async_trait]
impl Events for Sink {
    async fn forward(&self, _ctx: &TtrpcContext, req: api::ForwardRequest) -> ttrpc::Result<Empty> {
        use containerd_shim_protos::protobuf::Message;
        let env = req.envelope.unwrap();
        let pid = if env.topic == "/tasks/exit" {
            containerd_shim_protos::events::task::TaskExit::parse_from_bytes(&env.event.value)
                .unwrap()
                .pid
        } else {
            u32::MAX
        };
        self.0.lock().unwrap().push((env.namespace, env.topic, pid));
        Ok(Empty::new())
    }
}

#[tokio::test]
async fn events_arrive_in_order_even_if_containerd_comes_late() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("containerd.sock.ttrpc");
    let publisher = Publisher::start(path.display().to_string(), "k8s.io".into());
    let ev = |i: u32| TaskEvent::Exit {
        container_id: "c".into(),
        id: format!("e{i}"),
        pid: i,
        status: 0,
        at: SystemTime::now(),
    };
    publisher.publish(TaskEvent::Oom {
        container_id: "c".into(),
    });
    for i in 0..20 {
        publisher.publish(ev(i));
    }
    // containerd shows up only now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sink = Arc::new(Sink::default());
    let mut server = ttrpc::asynchronous::Server::new()
        .bind(&format!("unix://{}", path.display()))
        .unwrap()
        .register_service(create_events(sink.clone()));
    server.start().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink.0.lock().unwrap().len() < 21 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = sink.0.lock().unwrap().clone();
    assert_eq!(got.len(), 21, "every event arrives");
    assert_eq!(got[0].1, "/tasks/oom");
    assert!(got.iter().all(|(ns, _, _)| ns == "k8s.io"));
    let pids: Vec<u32> = got[1..].iter().map(|(_, _, p)| *p).collect();
    assert_eq!(pids, (0..20).collect::<Vec<_>>(), "in the order published");
}
