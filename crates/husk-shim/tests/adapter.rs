//! The ttrpc adapter over a real socket, with the engine on the fake OS:
//! protobuf in, codes and messages out, no root needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::sandbox_api as api;
use containerd_shim_protos::sandbox_async::SandboxClient;
use husk_sandbox::os::fake::FakeOs;
use husk_sandbox::{Engine, Host, PodConfig, StateStore};
use husk_shim::cri;
use husk_shim::pod::Pod;
use husk_task::events::RecordedEvents;
use husk_task::runtime::fake::FakeRuntime;
use ttrpc::context;
use ttrpc::Code;

struct Rig {
    raw: ttrpc::asynchronous::Client,
    client: SandboxClient,
    tasks: containerd_shim_protos::shim_async::TaskClient,
    pod: Arc<Pod>,
    os: FakeOs,
    runtime: FakeRuntime,
    events: Arc<RecordedEvents>,
    bundle: tempfile::TempDir,
    _dirs: Vec<tempfile::TempDir>,
    _server: ttrpc::asynchronous::Server,
}

async fn rig() -> Rig {
    let os = FakeOs::new();
    let state = tempfile::tempdir().unwrap();
    let sockdir = tempfile::tempdir().unwrap();
    let engine = Engine::new(Host::fake(&os), StateStore::new(state.path()));
    let runtime = FakeRuntime::new(os.clone());
    let events = Arc::new(RecordedEvents::default());
    let tasks = husk_task::Tasks::new(
        Host::fake(&os),
        Arc::new(runtime.clone()),
        events.clone(),
        "test",
        sockdir.path().join("c"),
    );
    let pod = Pod::new(engine, tasks, Default::default());
    // The shim's own server: peer check, connection count, service gate.
    let path = sockdir.path().join("s.sock");
    let addr = format!("unix://{}", path.display());
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let live = Arc::new(tokio::sync::watch::channel(0usize).0);
    let owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(sockdir.path()).unwrap().uid()
    };
    let mut server = husk_shim::serve::server(pod.clone(), listener, Some(owner), live);
    server.start().await.unwrap();
    let c = ttrpc::asynchronous::Client::connect(&addr).await.unwrap();
    Rig {
        raw: c.clone(),
        client: SandboxClient::new(c.clone()),
        tasks: containerd_shim_protos::shim_async::TaskClient::new(c),
        pod,
        os,
        runtime,
        events,
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

    assert!(!*r.pod.exit_gate().borrow());
    let mut sd = api::ShutdownSandboxRequest::new();
    sd.sandbox_id = "s1".into();
    r.client.shutdown_sandbox(ctx(), &sd).await.unwrap();
    assert!(
        *r.pod.exit_gate().borrow(),
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

// ---- the Task service: containers in the pod, through the fake runtime ----

use containerd_shim_protos::api as tapi;
use containerd_shim_protos::types::task::Status as TStatus;

const SPEC: &str = r#"{"ociVersion":"1.2.1",
  "process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},
  "root":{"path":"rootfs"},
  "linux":{"cgroupsPath":"/pods/CID","namespaces":[{"type":"pid"},{"type":"network","path":"/proc/1/ns/net"}]}}"#;

impl Rig {
    async fn running_pod(&self) {
        self.client
            .create_sandbox(ctx(), &self.create_req("pod", &PodConfig::default()))
            .await
            .unwrap();
        let mut s = api::StartSandboxRequest::new();
        s.sandbox_id = "pod".into();
        self.client.start_sandbox(ctx(), &s).await.unwrap();
    }

    fn bundle_for(&self, id: &str) -> tempfile::TempDir {
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("config.json"), SPEC.replace("CID", id)).unwrap();
        b
    }

    fn create_task_req(&self, id: &str, bundle: &std::path::Path) -> tapi::CreateTaskRequest {
        let mut r = tapi::CreateTaskRequest::new();
        r.id = id.into();
        r.bundle = bundle.display().to_string();
        let mut m = containerd_shim_protos::types::mount::Mount::new();
        m.type_ = "overlay".into();
        m.source = "overlay".into();
        m.options = vec!["lowerdir=/l".into()];
        r.rootfs = vec![m];
        r
    }

    async fn task_state(&self, id: &str, exec_id: &str) -> tapi::StateResponse {
        let mut s = tapi::StateRequest::new();
        s.id = id.into();
        s.exec_id = exec_id.into();
        self.tasks.state(ctx(), &s).await.unwrap()
    }

    async fn kill(&self, id: &str, exec_id: &str, sig: u32) -> ttrpc::Result<()> {
        let mut k = tapi::KillRequest::new();
        k.id = id.into();
        k.exec_id = exec_id.into();
        k.signal = sig;
        self.tasks.kill(ctx(), &k).await.map(|_| ())
    }

    async fn wait_task(&self, id: &str, exec_id: &str) -> u32 {
        let mut w = tapi::WaitRequest::new();
        w.id = id.into();
        w.exec_id = exec_id.into();
        self.tasks.wait(ctx(), &w).await.unwrap().exit_status
    }

    async fn delete_task(&self, id: &str, exec_id: &str) -> ttrpc::Result<tapi::DeleteResponse> {
        let mut d = tapi::DeleteRequest::new();
        d.id = id.into();
        d.exec_id = exec_id.into();
        self.tasks.delete(ctx(), &d).await
    }

    fn exec_req(&self, id: &str, exec_id: &str) -> tapi::ExecProcessRequest {
        let mut e = tapi::ExecProcessRequest::new();
        e.id = id.into();
        e.exec_id = exec_id.into();
        let mut any = Any::new();
        any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
        any.value = br#"{"cwd":"/","args":["true"],"user":{"uid":0,"gid":0}}"#.to_vec();
        e.spec = MessageField::some(any);
        e
    }
}

#[tokio::test]
async fn container_lifecycle_over_ttrpc() {
    let r = rig().await;
    r.running_pod().await;
    let b = r.bundle_for("c1");
    let mut req = r.create_task_req("c1", b.path());
    let mut opts = Any::new();
    opts.type_url = "runtimeoptions.v1.Options".into();
    let body = b"BinaryName = '/usr/sbin/runc'\n";
    opts.value = [vec![3 << 3 | 2, body.len() as u8], body.to_vec()].concat();
    req.options = MessageField::some(opts);
    let pid = r.tasks.create(ctx(), &req).await.unwrap().pid;
    assert!(pid > 0);
    assert_eq!(
        r.runtime.binaries(),
        vec!["/usr/sbin/runc"],
        "BinaryName from the options"
    );
    assert!(
        r.os.mounted().contains(&b.path().join("rootfs")),
        "rootfs mounted"
    );
    assert_eq!(
        r.task_state("c1", "").await.status.enum_value(),
        Ok(TStatus::CREATED)
    );

    let mut st = tapi::StartRequest::new();
    st.id = "c1".into();
    assert_eq!(r.tasks.start(ctx(), &st).await.unwrap().pid, pid);
    assert_eq!(
        r.task_state("c1", "").await.status.enum_value(),
        Ok(TStatus::RUNNING)
    );
    assert_eq!(
        code(r.tasks.start(ctx(), &st).await),
        Code::FAILED_PRECONDITION
    );

    // An exec: registered, started, killed, waited, deleted.
    r.tasks.exec(ctx(), &r.exec_req("c1", "e1")).await.unwrap();
    assert_eq!(
        code(r.tasks.exec(ctx(), &r.exec_req("c1", "e1")).await),
        Code::ALREADY_EXISTS
    );
    let mut se = tapi::StartRequest::new();
    se.id = "c1".into();
    se.exec_id = "e1".into();
    let epid = r.tasks.start(ctx(), &se).await.unwrap().pid;
    assert_ne!(epid, pid);
    let mut pids = tapi::PidsRequest::new();
    pids.id = "c1".into();
    let listed: Vec<u32> = r
        .tasks
        .pids(ctx(), &pids)
        .await
        .unwrap()
        .processes
        .iter()
        .map(|p| p.pid)
        .collect();
    assert!(
        listed.contains(&pid) && listed.contains(&epid),
        "{listed:?}"
    );
    r.os.exit_with(epid, 3);
    assert_eq!(r.wait_task("c1", "e1").await, 3);
    assert_eq!(r.delete_task("c1", "e1").await.unwrap().exit_status, 3);
    assert_eq!(code(r.delete_task("c1", "e1").await), Code::NOT_FOUND);

    // The shim stays while a container lives.
    r.tasks
        .shutdown(ctx(), &tapi::ShutdownRequest::new())
        .await
        .unwrap();
    assert!(!*r.pod.exit_gate().borrow());

    // Delete of a running container is refused; kill, wait, delete.
    assert_eq!(
        code(r.delete_task("c1", "").await),
        Code::FAILED_PRECONDITION
    );
    r.kill("c1", "", libc::SIGKILL as u32).await.unwrap();
    assert_eq!(r.wait_task("c1", "").await, 137);
    assert_eq!(
        code(r.kill("c1", "", libc::SIGTERM as u32).await),
        Code::NOT_FOUND,
        "a finished process is NotFound to containerd"
    );
    let d = r.delete_task("c1", "").await.unwrap();
    assert_eq!((d.pid, d.exit_status), (pid, 137));
    assert!(
        !r.os.mounted().contains(&b.path().join("rootfs")),
        "rootfs unmounted"
    );
    assert!(!b.path().join("husk-task.json").exists());
    assert_eq!(code(r.delete_task("c1", "").await), Code::NOT_FOUND);
    assert_eq!(
        r.events.topics(),
        vec![
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    assert!(r.runtime.calls().contains(&"delete c1".to_string()));
}

#[tokio::test]
async fn bad_container_requests_fail_clearly_and_leave_nothing() {
    let r = rig().await;
    r.running_pod().await;
    // No config.json; invalid JSON.
    let empty = tempfile::tempdir().unwrap();
    let req = r.create_task_req("c1", empty.path());
    assert_eq!(
        code(r.tasks.create(ctx(), &req).await),
        Code::INVALID_ARGUMENT
    );
    std::fs::write(empty.path().join("config.json"), "{nope").unwrap();
    assert_eq!(
        code(r.tasks.create(ctx(), &req).await),
        Code::INVALID_ARGUMENT
    );
    // A rootfs mount that fails; a runtime that fails.
    let b = r.bundle_for("c1");
    let req = r.create_task_req("c1", b.path());
    r.os.fail_next("mount");
    assert_eq!(code(r.tasks.create(ctx(), &req).await), Code::INTERNAL);
    r.runtime.fail_next("create");
    let e = r.tasks.create(ctx(), &req).await.unwrap_err();
    assert!(format!("{e:?}").contains("injected failure"), "{e:?}");
    assert!(
        r.os.mounted().iter().all(|m| !m.starts_with(b.path())),
        "mount undone"
    );
    assert!(r.pod.tasks.is_empty());
    // Unknown ids on every verb.
    let mut s = tapi::StartRequest::new();
    s.id = "nope".into();
    assert_eq!(code(r.tasks.start(ctx(), &s).await), Code::NOT_FOUND);
    assert_eq!(code(r.kill("nope", "", 9).await), Code::NOT_FOUND);
    assert_eq!(code(r.delete_task("nope", "").await), Code::NOT_FOUND);
    let mut st = tapi::StateRequest::new();
    st.id = "nope".into();
    assert_eq!(code(r.tasks.state(ctx(), &st).await), Code::NOT_FOUND);
    let mut w = tapi::WaitRequest::new();
    w.id = "nope".into();
    assert_eq!(code(r.tasks.wait(ctx(), &w).await), Code::NOT_FOUND);
    let mut p = tapi::PidsRequest::new();
    p.id = "nope".into();
    assert_eq!(code(r.tasks.pids(ctx(), &p).await), Code::NOT_FOUND);
    let mut sr = tapi::StatsRequest::new();
    sr.id = "nope".into();
    assert_eq!(code(r.tasks.stats(ctx(), &sr).await), Code::NOT_FOUND);
    let mut pr = tapi::PauseRequest::new();
    pr.id = "nope".into();
    assert_eq!(code(r.tasks.pause(ctx(), &pr).await), Code::NOT_FOUND);
    let mut rr = tapi::ResumeRequest::new();
    rr.id = "nope".into();
    assert_eq!(code(r.tasks.resume(ctx(), &rr).await), Code::NOT_FOUND);
    let mut ur = tapi::UpdateTaskRequest::new();
    ur.id = "nope".into();
    assert_eq!(code(r.tasks.update(ctx(), &ur).await), Code::NOT_FOUND);
    let mut cr = tapi::CloseIORequest::new();
    cr.id = "nope".into();
    cr.stdin = true;
    assert_eq!(code(r.tasks.close_io(ctx(), &cr).await), Code::NOT_FOUND);
    let mut rp = tapi::ResizePtyRequest::new();
    rp.id = "nope".into();
    assert_eq!(code(r.tasks.resize_pty(ctx(), &rp).await), Code::NOT_FOUND);
    let mut cn = tapi::ConnectRequest::new();
    cn.id = "nope".into();
    assert_eq!(code(r.tasks.connect(ctx(), &cn).await), Code::NOT_FOUND);
    assert_eq!(
        code(r.tasks.exec(ctx(), &r.exec_req("nope", "e")).await),
        Code::NOT_FOUND
    );
    assert_eq!(
        code(
            r.tasks
                .checkpoint(ctx(), &tapi::CheckpointTaskRequest::new())
                .await
        ),
        Code::UNIMPLEMENTED
    );

    // Duplicate id, invalid update, exec into a stopped container.
    r.tasks.create(ctx(), &req).await.unwrap();
    assert_eq!(
        code(r.tasks.create(ctx(), &req).await),
        Code::ALREADY_EXISTS
    );
    let mut s = tapi::StartRequest::new();
    s.id = "c1".into();
    r.tasks.start(ctx(), &s).await.unwrap();
    let mut u = tapi::UpdateTaskRequest::new();
    u.id = "c1".into();
    let mut any = Any::new();
    any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
    any.value = br#"{"memory":{"limit":12}}"#.to_vec();
    u.resources = MessageField::some(any.clone());
    assert_eq!(
        code(r.tasks.update(ctx(), &u).await),
        Code::INVALID_ARGUMENT
    );
    any.value = br#"{"memory":{"limit":104857600}}"#.to_vec();
    u.resources = MessageField::some(any);
    r.tasks.update(ctx(), &u).await.unwrap();
    r.kill("c1", "", 9).await.unwrap();
    r.wait_task("c1", "").await;
    assert_eq!(
        code(r.tasks.exec(ctx(), &r.exec_req("c1", "e1")).await),
        Code::FAILED_PRECONDITION
    );
    r.delete_task("c1", "").await.unwrap();
    // The pod still serves.
    let mut ping = api::PingRequest::new();
    ping.sandbox_id = "pod".into();
    r.client.ping_sandbox(ctx(), &ping).await.unwrap();
}

#[tokio::test]
async fn stop_sandbox_stops_its_containers_first() {
    let r = rig().await;
    r.running_pod().await;
    let b = r.bundle_for("c1");
    r.tasks
        .create(ctx(), &r.create_task_req("c1", b.path()))
        .await
        .unwrap();
    let mut s = tapi::StartRequest::new();
    s.id = "c1".into();
    r.tasks.start(ctx(), &s).await.unwrap();
    let mut stop = api::StopSandboxRequest::new();
    stop.sandbox_id = "pod".into();
    stop.timeout_secs = 1;
    r.client.stop_sandbox(ctx(), &stop).await.unwrap();
    assert_eq!(
        r.task_state("c1", "").await.status.enum_value(),
        Ok(TStatus::STOPPED)
    );
    assert_eq!(r.wait_task("c1", "").await, 0, "SIGTERM within the grace");
    // Shutdown removes the container too, and then the shim may go.
    let mut sh = api::ShutdownSandboxRequest::new();
    sh.sandbox_id = "pod".into();
    r.client.shutdown_sandbox(ctx(), &sh).await.unwrap();
    assert!(r.pod.tasks.is_empty());
    assert!(r.os.mounted().is_empty());
    assert!(*r.pod.exit_gate().borrow());
    let topics = r.events.topics();
    assert_eq!(topics.last(), Some(&"/tasks/delete"));
}

fn raw_request(service: &str, method: &str) -> ttrpc::Request {
    let mut req = ttrpc::Request::new();
    req.set_service(service.into());
    req.set_method(method.into());
    req.set_timeout_nano(10_000_000_000);
    req
}

#[tokio::test]
async fn an_unknown_service_is_unimplemented_and_the_connection_serves_on() {
    let r = rig().await;
    let status = |res: ttrpc::Result<ttrpc::Response>| match res {
        Err(ttrpc::Error::RpcStatus(s)) => (s.code(), s.message),
        other => panic!("want a status, got {other:?}"),
    };
    // As containerd's Go ttrpc server answers: UNIMPLEMENTED, "service X".
    let (c, m) = status(
        r.raw
            .request(raw_request("containerd.task.v2.Task", "State"))
            .await,
    );
    assert_eq!(
        (c, m.as_str()),
        (Code::UNIMPLEMENTED, "service containerd.task.v2.Task")
    );
    // An unknown method of a served service was already UNIMPLEMENTED.
    let (c, _) = status(
        r.raw
            .request(raw_request("containerd.runtime.sandbox.v1.Sandbox", "Nope"))
            .await,
    );
    assert_eq!(c, Code::UNIMPLEMENTED);
    // Many in flight on one connection, known and unknown mixed: every
    // answer comes back to its own caller.
    let mut calls = Vec::new();
    for i in 0..64 {
        let raw = r.raw.clone();
        let client = r.client.clone();
        calls.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let res = raw.request(raw_request("x.Unknown", "M")).await;
                matches!(res, Err(ttrpc::Error::RpcStatus(s)) if s.code() == Code::UNIMPLEMENTED)
            } else {
                let mut ping = api::PingRequest::new();
                ping.sandbox_id = "none".into();
                let res = client.ping_sandbox(ctx(), &ping).await;
                matches!(res, Err(ttrpc::Error::RpcStatus(s)) if s.code() == Code::NOT_FOUND)
            }
        }));
    }
    for c in calls {
        assert!(c.await.unwrap());
    }
}
