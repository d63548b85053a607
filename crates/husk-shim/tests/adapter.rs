//! The ttrpc adapter over a real socket, with the engine on the fake OS:
//! protobuf in, codes and messages out, no root needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::sandbox_api as api;
use containerd_shim_protos::sandbox_async::{create_sandbox, SandboxClient};
use husk_sandbox::os::fake::FakeOs;
use husk_sandbox::{Engine, Host, PodConfig, StateStore};
use husk_shim::cri;
use husk_shim::service::{ExitGate, SandboxService};
use ttrpc::context;
use ttrpc::Code;

struct Rig {
    client: SandboxClient,
    gate: ExitGate,
    bundle: tempfile::TempDir,
    _dirs: Vec<tempfile::TempDir>,
    _server: ttrpc::asynchronous::Server,
}

async fn rig() -> Rig {
    let os = FakeOs::new();
    let state = tempfile::tempdir().unwrap();
    let sockdir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::new(Host::fake(&os), StateStore::new(state.path())));
    let gate = ExitGate::default();
    let svc = Arc::new(SandboxService::new(engine, gate.clone()));
    let addr = format!("unix://{}/s.sock", sockdir.path().display());
    let mut server = ttrpc::asynchronous::Server::new()
        .bind(&addr)
        .unwrap()
        .register_service(create_sandbox(svc));
    server.start().await.unwrap();
    let c = ttrpc::asynchronous::Client::connect(&addr).await.unwrap();
    Rig {
        client: SandboxClient::new(c),
        gate,
        bundle: tempfile::tempdir().unwrap(),
        _dirs: vec![state, sockdir],
        _server: server,
    }
}

fn ctx() -> context::Context {
    context::with_timeout(10_000_000_000)
}

#[track_caller]
fn code<T: std::fmt::Debug>(r: ttrpc::Result<T>) -> Code {
    match r {
        Err(ttrpc::Error::RpcStatus(s)) => s.code(),
        other => panic!("expected an RPC status, got {other:?}"),
    }
}

impl Rig {
    fn create_req(&self, id: &str, pod: &PodConfig) -> api::CreateSandboxRequest {
        let mut r = api::CreateSandboxRequest::new();
        r.sandbox_id = id.into();
        r.bundle_path = self.bundle.path().display().to_string();
        let mut any = Any::new();
        any.type_url = "runtime.v1.PodSandboxConfig".into();
        any.value = cri::encode::pod_config(pod);
        r.options = MessageField::some(any);
        r
    }
}

#[tokio::test]
async fn lifecycle_over_ttrpc() {
    let r = rig().await;
    let pod = PodConfig {
        hostname: "h1".into(),
        ..Default::default()
    };
    r.client
        .create_sandbox(ctx(), &r.create_req("s1", &pod))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(r.bundle.path().join("hostname")).unwrap(),
        "h1\n"
    );

    let mut st = api::SandboxStatusRequest::new();
    st.sandbox_id = "s1".into();
    let s = r.client.sandbox_status(ctx(), &st).await.unwrap();
    assert_eq!(s.state, "SANDBOX_NOTREADY");
    assert_eq!(s.sandbox_id, "s1");

    let mut start = api::StartSandboxRequest::new();
    start.sandbox_id = "s1".into();
    let started = r.client.start_sandbox(ctx(), &start).await.unwrap();
    assert!(started.pid > 0);
    assert!(started.created_at.is_some());

    st.verbose = true;
    let s = r.client.sandbox_status(ctx(), &st).await.unwrap();
    assert_eq!(s.state, "SANDBOX_READY");
    assert_eq!(s.pid, started.pid);
    assert_eq!(s.info["phase"], "running");
    assert!(s.exited_at.is_none());

    let mut p = api::PlatformRequest::new();
    p.sandbox_id = "s1".into();
    let plat = r.client.platform(ctx(), &p).await.unwrap();
    assert_eq!(plat.platform.os, "linux");
    assert!(!plat.platform.architecture.is_empty());

    let mut m = api::SandboxMetricsRequest::new();
    m.sandbox_id = "s1".into();
    let met = r.client.sandbox_metrics(ctx(), &m).await.unwrap();
    assert_eq!(met.metrics.id, "s1");
    assert!(met.metrics.timestamp.is_some());
    assert_eq!(
        met.metrics.data.type_url,
        "io.containerd.cgroups.v1.Metrics"
    );
    let v1 = containerd_shim_protos::cgroups::metrics::Metrics::parse_from_bytes(
        &met.metrics.data.value,
    )
    .unwrap();
    assert_eq!(v1.pids.current, 1, "the holder is in the pod cgroup");

    let mut ping = api::PingRequest::new();
    ping.sandbox_id = "s1".into();
    r.client.ping_sandbox(ctx(), &ping).await.unwrap();

    let mut stop = api::StopSandboxRequest::new();
    stop.sandbox_id = "s1".into();
    r.client.stop_sandbox(ctx(), &stop).await.unwrap();
    let mut w = api::WaitSandboxRequest::new();
    w.sandbox_id = "s1".into();
    let waited = r.client.wait_sandbox(ctx(), &w).await.unwrap();
    assert_eq!(waited.exit_status, 0);
    assert!(waited.exited_at.is_some());
    let s = r.client.sandbox_status(ctx(), &st).await.unwrap();
    assert_eq!(s.state, "SANDBOX_NOTREADY");
    assert_eq!(s.exited_at, waited.exited_at);
    assert_eq!(
        code(r.client.ping_sandbox(ctx(), &ping).await),
        Code::FAILED_PRECONDITION
    );
    assert_eq!(
        code(r.client.start_sandbox(ctx(), &start).await),
        Code::FAILED_PRECONDITION
    );

    assert!(!*r.gate.subscribe().borrow());
    let mut sd = api::ShutdownSandboxRequest::new();
    sd.sandbox_id = "s1".into();
    r.client.shutdown_sandbox(ctx(), &sd).await.unwrap();
    assert!(
        *r.gate.subscribe().borrow(),
        "the last shutdown lets the shim exit"
    );
    r.client.shutdown_sandbox(ctx(), &sd).await.unwrap();
    assert_eq!(
        code(r.client.sandbox_status(ctx(), &st).await),
        Code::NOT_FOUND
    );
}

#[tokio::test]
async fn errors_map_to_codes() {
    let r = rig().await;
    let pod = PodConfig::default();

    let mut bad = r.create_req("g", &pod);
    bad.options.as_mut().unwrap().value = b"\xff\xff\xff".to_vec();
    let e = r.client.create_sandbox(ctx(), &bad).await;
    assert_eq!(code(e), Code::INVALID_ARGUMENT);

    for id in ["", "a/b", "..", &"x".repeat(80)] {
        let req = r.create_req(id, &pod);
        assert_eq!(
            code(r.client.create_sandbox(ctx(), &req).await),
            Code::INVALID_ARGUMENT,
            "{id:?}"
        );
    }
    let mut req = r.create_req("n", &pod);
    req.netns_path = "/etc/hostname".into();
    assert_eq!(
        code(r.client.create_sandbox(ctx(), &req).await),
        Code::INVALID_ARGUMENT
    );

    r.client
        .create_sandbox(ctx(), &r.create_req("dup", &pod))
        .await
        .unwrap();
    assert_eq!(
        code(
            r.client
                .create_sandbox(ctx(), &r.create_req("dup", &pod))
                .await
        ),
        Code::ALREADY_EXISTS
    );

    let mut st = api::SandboxStatusRequest::new();
    st.sandbox_id = "missing".into();
    assert_eq!(
        code(r.client.sandbox_status(ctx(), &st).await),
        Code::NOT_FOUND
    );
    let mut stop = api::StopSandboxRequest::new();
    stop.sandbox_id = "missing".into();
    assert_eq!(
        code(r.client.stop_sandbox(ctx(), &stop).await),
        Code::NOT_FOUND
    );
    let mut p = api::PlatformRequest::new();
    p.sandbox_id = "missing".into();
    assert_eq!(code(r.client.platform(ctx(), &p).await), Code::NOT_FOUND);
}

#[tokio::test]
async fn options_of_other_types_are_ignored() {
    let r = rig().await;
    let mut req = r.create_req("o", &PodConfig::default());
    let mut any = Any::new();
    any.type_url = "containerd.runc.v1.Options".into();
    any.value = vec![1, 2, 3];
    req.options = MessageField::some(any);
    r.client.create_sandbox(ctx(), &req).await.unwrap();
}
