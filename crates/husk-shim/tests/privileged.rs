//! Privileged integration tests: the real shim binary, launched the way
//! containerd launches it, checked against what the kernel shows.
//!
//! They need root. Without it each test prints a loud SKIPPED line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::sandbox_api as api;
use containerd_shim_protos::sandbox_async::SandboxClient;
use husk_sandbox::inspect::{alive, mounts_under};
use husk_sandbox::{Dns, NsMode, PodConfig};
use husk_shim::cri;
use ttrpc::context;
use ttrpc::Code;

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-husk-v1");

fn root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    eprintln!(
        "\n*** SKIPPED: privileged test needs root (run the suite as root: sudo cargo test) ***\n"
    );
    false
}

fn ctx() -> context::Context {
    context::with_timeout(20_000_000_000)
}

#[track_caller]
fn code<T: std::fmt::Debug>(r: ttrpc::Result<T>) -> Code {
    match r {
        Err(ttrpc::Error::RpcStatus(s)) => s.code(),
        other => panic!("expected an RPC status, got {other:?}"),
    }
}

fn ns_ino(path: impl AsRef<Path>) -> u64 {
    fs::metadata(path.as_ref())
        .map(|m| m.ino())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `f` in a thread that joined `/proc/<pid>/ns/<ns>`.
fn in_ns<T: Send + 'static>(pid: u32, ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/proc/{pid}/ns/{ns}");
    std::thread::spawn(move || {
        let f_ns = fs::File::open(&path).unwrap();
        nix::sched::setns(f_ns, nix::sched::CloneFlags::empty()).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// A network namespace file made for the test with `ip netns add`.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("husk-t-{}-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// One sandbox's shim, with its own run root, namespace, bundle and
/// cgroup parent, so tests run in parallel without touching each other.
struct Pod {
    run_root: tempfile::TempDir,
    bundle: tempfile::TempDir,
    ns: String,
    id: String,
    cgroup_parent: String,
    env: Vec<(String, String)>,
    client: Option<SandboxClient>,
    pid: u32,
}

impl Pod {
    fn new(tag: &str) -> Pod {
        let id = format!("t{}-{tag}", std::process::id());
        Pod {
            run_root: tempfile::tempdir().unwrap(),
            bundle: tempfile::tempdir().unwrap(),
            ns: "husktest".into(),
            cgroup_parent: format!("/husk-test-{id}"),
            id,
            env: vec![],
            client: None,
            pid: 0,
        }
    }

    fn shim(&self) -> Command {
        let mut c = Command::new(SHIM);
        c.env("HUSK_RUN_ROOT", self.run_root.path());
        c.env_remove("HUSK_PAUSE");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn start_argv(&self, stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .shim()
            .args([
                "-namespace",
                &self.ns,
                "-address",
                "/run/none.sock",
                "-publish-binary",
                "/bin/true",
                "-id",
                &self.id,
                "start",
            ])
            .current_dir(self.bundle.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    async fn launch(&mut self) -> String {
        let out = self.start_argv(b"");
        assert!(
            out.status.success(),
            "start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(reply["version"], 3);
        assert_eq!(reply["protocol"], "ttrpc");
        let addr = reply["address"].as_str().unwrap().to_string();
        let c = ttrpc::asynchronous::Client::connect(&addr).await.unwrap();
        self.client = Some(SandboxClient::new(c));
        addr
    }

    fn c(&self) -> &SandboxClient {
        self.client.as_ref().unwrap()
    }

    fn pod_config(&self) -> PodConfig {
        PodConfig {
            name: "test".into(),
            hostname: "pod-under-test".into(),
            cgroup_parent: self.cgroup_parent.clone(),
            dns: Some(Dns {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["ns.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            ..Default::default()
        }
    }

    fn create_req(&self, pod: &PodConfig, netns: Option<&Path>) -> api::CreateSandboxRequest {
        let mut r = api::CreateSandboxRequest::new();
        r.sandbox_id = self.id.clone();
        r.bundle_path = self.bundle.path().display().to_string();
        if let Some(n) = netns {
            r.netns_path = n.display().to_string();
        }
        let mut any = Any::new();
        any.type_url = "runtime.v1.PodSandboxConfig".into();
        any.value = cri::encode::pod_config(pod);
        r.options = MessageField::some(any);
        r
    }

    async fn create(
        &self,
        pod: &PodConfig,
        netns: Option<&Path>,
    ) -> ttrpc::Result<api::CreateSandboxResponse> {
        self.c()
            .create_sandbox(ctx(), &self.create_req(pod, netns))
            .await
    }

    async fn start(&mut self) -> u32 {
        let mut r = api::StartSandboxRequest::new();
        r.sandbox_id = self.id.clone();
        let resp = self.c().start_sandbox(ctx(), &r).await.unwrap();
        assert!(resp.created_at.is_some());
        self.pid = resp.pid;
        resp.pid
    }

    async fn status(&self) -> api::SandboxStatusResponse {
        let mut r = api::SandboxStatusRequest::new();
        r.sandbox_id = self.id.clone();
        r.verbose = true;
        self.c().sandbox_status(ctx(), &r).await.unwrap()
    }

    async fn stop(&self, timeout_secs: u32) {
        let mut r = api::StopSandboxRequest::new();
        r.sandbox_id = self.id.clone();
        r.timeout_secs = timeout_secs;
        self.c().stop_sandbox(ctx(), &r).await.unwrap();
    }

    async fn wait(&self) -> api::WaitSandboxResponse {
        let mut r = api::WaitSandboxRequest::new();
        r.sandbox_id = self.id.clone();
        self.c()
            .wait_sandbox(context::with_timeout(0), &r)
            .await
            .unwrap()
    }

    async fn shutdown(&self) {
        let mut r = api::ShutdownSandboxRequest::new();
        r.sandbox_id = self.id.clone();
        self.c().shutdown_sandbox(ctx(), &r).await.unwrap();
    }

    /// What containerd does at RunPodSandbox: start, CreateSandbox with
    /// the test's pod config, StartSandbox. Returns the holder's pid.
    async fn run(&mut self) -> u32 {
        self.launch().await;
        self.create(&self.pod_config(), None).await.unwrap();
        self.start().await
    }

    /// What containerd does at RemovePodSandbox: ShutdownSandbox, hang
    /// up, `shim delete`; then check that nothing is left.
    async fn remove_and_check(&mut self) {
        self.shutdown().await;
        drop(self.client.take());
        self.delete();
        self.assert_clean();
    }

    /// Kills the shim server with SIGKILL, as a crash would.
    fn kill_server(&mut self) -> u32 {
        let server = self.server_pid().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_until("the shim to die", || !alive(server));
        drop(self.client.take());
        server
    }

    fn delete(&self) -> DeleteResponse {
        let out = self
            .shim()
            .args(["-namespace", &self.ns, "-id", &self.id, "-bundle"])
            .arg(self.bundle.path())
            .arg("delete")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "delete: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        DeleteResponse::parse_from_bytes(&out.stdout).unwrap()
    }

    fn socket(&self) -> PathBuf {
        let dir = self.run_root.path().join("s");
        fs::read_dir(&dir)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path())
            .unwrap_or_else(|| dir.join("none"))
    }

    fn server_pid(&self) -> Option<u32> {
        husk_shim::server_proc::shim_server(&self.id)
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let Ok(rd) = fs::read_dir(base) else { continue };
            for h in rd.flatten() {
                let d = h.path().join(self.cgroup_parent.trim_start_matches('/'));
                if d.exists() {
                    v.push(d);
                }
            }
            let d = Path::new(base).join(self.cgroup_parent.trim_start_matches('/'));
            if d.exists() && !v.contains(&d) {
                v.push(d);
            }
        }
        v
    }

    /// Removes the test's own cgroup parent (husk leaves a parent it did
    /// not create, as it must for kubelet's parents).
    fn remove_parent(&self) {
        for d in self.cgroup_dirs() {
            let _ = fs::remove_dir(&d);
        }
    }

    /// A failed CreateSandbox made nothing: the bundle holds only what
    /// `start` wrote, nothing is mounted, no pod cgroup exists.
    fn assert_nothing_made(&self) {
        assert!(fs::read_dir(self.bundle.path())
            .unwrap()
            .flatten()
            .all(|e| e.file_name() == "address" || e.file_name() == "shim.pid"));
        assert!(mounts_under(self.bundle.path()).is_empty());
        for d in self.cgroup_dirs() {
            assert!(!d.join(&self.id).exists(), "cgroup left: {}", d.display());
        }
    }

    /// Nothing of the sandbox remains: holder, shim, cgroup, mounts, pod
    /// files, state, socket.
    fn assert_clean(&self) {
        if self.pid != 0 {
            assert!(!alive(self.pid), "holder {} still alive", self.pid);
        }
        for d in self.cgroup_dirs() {
            assert!(
                !d.join(&self.id).exists(),
                "cgroup {} left",
                d.join(&self.id).display()
            );
        }
        assert!(
            mounts_under(self.bundle.path()).is_empty(),
            "mounts left: {:?}",
            mounts_under(self.bundle.path())
        );
        for f in ["hostname", "hosts", "resolv.conf", "shm"] {
            assert!(!self.bundle.path().join(f).exists(), "pod file {f} left");
        }
        assert!(
            !self
                .run_root
                .path()
                .join("state")
                .join(&self.ns)
                .join(&self.id)
                .exists(),
            "state left"
        );
        wait_until("the shim to exit", || self.server_pid().is_none());
        wait_until("the socket to go", || !self.socket().exists());
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Best effort for a failed test: kill what is left and clean up.
        if let Some(pid) = self.server_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self
            .shim()
            .args(["-namespace", &self.ns, "-id", &self.id, "delete"])
            .output();
        self.remove_parent();
    }
}

#[tokio::test]
async fn pod_namespaces_cgroup_and_files_are_real() {
    if !root() {
        return;
    }
    let netns = Netns::new("ns");
    let netns_ino = ns_ino(netns.path());
    let mut p = Pod::new("ns");
    let addr = p.launch().await;
    let sock = addr.trim_start_matches("unix://");
    assert_eq!(
        fs::metadata(sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::read_to_string(p.bundle.path().join("address")).unwrap(),
        addr
    );

    let mut pod = p.pod_config();
    pod.sysctls
        .insert("net.ipv4.ip_unprivileged_port_start".into(), "123".into());
    p.create(&pod, Some(&netns.path())).await.unwrap();
    let pid = p.start().await;

    // The kernel's view of the holder's namespaces.
    assert_eq!(
        ns_ino(format!("/proc/{pid}/ns/net")),
        ns_ino(netns.path()),
        "joined netns_path"
    );
    for n in ["ipc", "uts", "pid"] {
        assert_ne!(
            ns_ino(format!("/proc/{pid}/ns/{n}")),
            ns_ino(format!("/proc/self/ns/{n}")),
            "{n} is new"
        );
    }
    assert_eq!(
        ns_ino(format!("/proc/{pid}/ns/mnt")),
        ns_ino("/proc/self/ns/mnt")
    );
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.trim_end().ends_with("\t1"),
        "holder is PID 1 of its namespace: {nspid}"
    );
    let host = in_ns(pid, "uts", || {
        nix::unistd::gethostname().unwrap().into_string().unwrap()
    });
    assert_eq!(host, "pod-under-test");
    let port = in_ns(pid, "net", || {
        fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap()
    });
    assert_eq!(port.trim(), "123", "sysctl set inside the pod's netns");
    assert_ne!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .unwrap()
            .trim(),
        "123"
    );

    // cgroup membership, as the driver the shim uses sees it: every v1
    // hierarchy, or the unified one (HUSK_CGROUP=v2).
    let driver = husk_sandbox::os::cgroup::detect().unwrap();
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want = format!("{}/{}", p.cgroup_parent, p.id);
    let v1 = driver.version() == husk_sandbox::os::CgroupVersion::V1;
    let lines: Vec<&str> = cg.lines().filter(|l| l.starts_with("0::") != v1).collect();
    assert!(!lines.is_empty(), "no cgroup lines for the driver in {cg}");
    for line in lines {
        assert!(line.ends_with(&want), "{line} not in {want}");
    }
    let host_paths = driver.host_paths(Path::new(&want));
    assert!(!host_paths.is_empty());
    for dir in host_paths {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert_eq!(procs.trim(), pid.to_string(), "{}", dir.display());
    }

    // Pod files.
    let b = p.bundle.path();
    assert_eq!(
        fs::read_to_string(b.join("hostname")).unwrap(),
        "pod-under-test\n"
    );
    assert_eq!(
        fs::read_to_string(b.join("resolv.conf")).unwrap(),
        "search ns.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    assert!(fs::read_to_string(b.join("hosts"))
        .unwrap()
        .starts_with("127.0.0.1\tlocalhost\n"));
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let shm = b.join("shm").display().to_string();
    assert!(
        mi.lines()
            .any(|l| l.contains(&format!(" {shm} ")) && l.contains(" - tmpfs ")),
        "shm tmpfs mounted"
    );

    // Status and metrics.
    let st = p.status().await;
    assert_eq!(st.state, "SANDBOX_READY");
    assert_eq!(st.pid, pid);
    assert_eq!(st.info["ns.net"], format!("/proc/{pid}/ns/net"));
    assert_eq!(st.info["cgroup"], want);
    let mut m = api::SandboxMetricsRequest::new();
    m.sandbox_id = p.id.clone();
    let met = p.c().sandbox_metrics(ctx(), &m).await.unwrap();
    if v1 {
        assert_eq!(
            met.metrics.data.type_url,
            "io.containerd.cgroups.v1.Metrics"
        );
        let m = containerd_shim_protos::cgroups::metrics::Metrics::parse_from_bytes(
            &met.metrics.data.value,
        )
        .unwrap();
        assert_eq!(m.pids.current, 1);
        assert!(m.memory.usage.usage > 0);
        assert!(m.cpu.usage.total > 0);
    } else {
        assert_eq!(
            met.metrics.data.type_url,
            "io.containerd.cgroups.v2.Metrics"
        );
        let m = containerd_shim_protos::cgroups_v2::metrics::Metrics::parse_from_bytes(
            &met.metrics.data.value,
        )
        .unwrap();
        assert_eq!(m.pids.current, 1);
    }

    p.stop(5).await;
    let w = p.wait().await;
    assert_eq!(w.exit_status, 0, "holder exits 0 on SIGTERM");
    assert_eq!(p.status().await.state, "SANDBOX_NOTREADY");
    p.shutdown().await;
    drop(p.client.take());
    let d = p.delete();
    assert_eq!(d.pid, 0, "nothing left for delete after a clean shutdown");
    p.assert_clean();
    assert_eq!(
        ns_ino(netns.path()),
        netns_ino,
        "the netns containerd owns is untouched"
    );
}

#[tokio::test]
async fn stop_kills_a_process_that_ignores_sigterm() {
    if !root() {
        return;
    }
    let mut p = Pod::new("stub");
    let pid = p.run().await;
    // A process moved into the pod cgroup that ignores SIGTERM.
    let mut stubborn = Command::new("sh")
        .args(["-c", "trap '' TERM; while :; do sleep 1; done"])
        .spawn()
        .unwrap();
    let spid = stubborn.id();
    let procs = format!(
        "/sys/fs/cgroup/pids{}/{}/cgroup.procs",
        p.cgroup_parent, p.id
    );
    fs::write(&procs, spid.to_string()).unwrap();
    std::thread::sleep(Duration::from_millis(50)); // let the trap be installed
    let t0 = Instant::now();
    p.stop(1).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "waited the grace period"
    );
    let st = stubborn.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(9),
        "SIGKILLed after the grace period"
    );
    assert!(!alive(pid));
    assert_eq!(p.wait().await.exit_status, 0);
    p.remove_and_check().await;
}

#[tokio::test]
async fn wait_reports_a_sigkill_from_outside() {
    if !root() {
        return;
    }
    let mut p = Pod::new("kill");
    let pid = p.run().await;
    let waits: Vec<_> = (0..3)
        .map(|_| {
            let c = p.c().clone();
            let id = p.id.clone();
            tokio::spawn(async move {
                let mut r = api::WaitSandboxRequest::new();
                r.sandbox_id = id;
                c.wait_sandbox(context::with_timeout(0), &r).await.unwrap()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for w in waits {
        let w = w.await.unwrap();
        assert_eq!(w.exit_status, 137);
        assert!(w.exited_at.is_some());
    }
    let st = p.status().await;
    assert_eq!(st.state, "SANDBOX_NOTREADY");
    assert!(st.exited_at.is_some());
    // Wait after the fact answers at once.
    assert_eq!(p.wait().await.exit_status, 137);
    p.stop(0).await;
    p.remove_and_check().await;
}

#[tokio::test]
async fn host_network_shares_the_hosts_net_and_uts() {
    if !root() {
        return;
    }
    let mut p = Pod::new("hostnet");
    p.launch().await;
    let mut pod = p.pod_config();
    pod.network = NsMode::Node;
    pod.hostname = String::new();
    p.create(&pod, None).await.unwrap();
    let pid = p.start().await;
    for n in ["net", "uts"] {
        assert_eq!(
            ns_ino(format!("/proc/{pid}/ns/{n}")),
            ns_ino(format!("/proc/self/ns/{n}")),
            "{n} is the host's"
        );
    }
    assert_ne!(
        ns_ino(format!("/proc/{pid}/ns/pid")),
        ns_ino("/proc/self/ns/pid")
    );
    let me = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(
        fs::read_to_string(p.bundle.path().join("hostname"))
            .unwrap()
            .trim(),
        me
    );
    assert_eq!(
        fs::read_to_string(p.bundle.path().join("hosts")).unwrap(),
        fs::read_to_string("/etc/hosts").unwrap()
    );
    p.stop(0).await;
    p.remove_and_check().await;
}

#[tokio::test]
async fn empty_netns_path_means_a_fresh_network_namespace() {
    if !root() {
        return;
    }
    let mut p = Pod::new("fresh");
    let pid = p.run().await;
    assert_ne!(
        ns_ino(format!("/proc/{pid}/ns/net")),
        ns_ino("/proc/self/ns/net")
    );
    p.remove_and_check().await;
}

#[tokio::test]
async fn bad_input_fails_clearly_and_leaves_nothing() {
    if !root() {
        return;
    }
    let mut p = Pod::new("bad");
    p.launch().await;
    let pod = p.pod_config();
    // A regular file is not a network namespace.
    let e = p.create(&pod, Some(Path::new("/etc/hostname"))).await;
    assert_eq!(code(e), Code::INVALID_ARGUMENT);
    // A missing one neither.
    let e = p
        .create(&pod, Some(Path::new("/run/netns/does-not-exist")))
        .await;
    assert_eq!(code(e), Code::INVALID_ARGUMENT);
    // The mount namespace is a namespace, but not a network one.
    let e = p.create(&pod, Some(Path::new("/proc/self/ns/mnt"))).await;
    assert_eq!(code(e), Code::INVALID_ARGUMENT);
    // Garbage options.
    let mut req = p.create_req(&pod, None);
    req.options.as_mut().unwrap().value = b"\x0a\xff\x01".to_vec();
    assert_eq!(
        code(p.c().create_sandbox(ctx(), &req).await),
        Code::INVALID_ARGUMENT
    );
    // Bad sysctl, bad DNS, bad hostname, escaping cgroup parent.
    let mut bad = pod.clone();
    bad.sysctls.insert("vm.swappiness".into(), "1".into());
    assert_eq!(code(p.create(&bad, None).await), Code::INVALID_ARGUMENT);
    let mut bad = pod.clone();
    bad.dns.as_mut().unwrap().servers = vec!["1.2.3.4 evil".into()];
    assert_eq!(code(p.create(&bad, None).await), Code::INVALID_ARGUMENT);
    let mut bad = pod.clone();
    bad.hostname = "a/b".into();
    assert_eq!(code(p.create(&bad, None).await), Code::INVALID_ARGUMENT);
    let mut bad = pod.clone();
    bad.cgroup_parent = "/../../x".into();
    assert_eq!(code(p.create(&bad, None).await), Code::INVALID_ARGUMENT);
    // A cgroup parent the kernel refuses: a directory under a control file.
    let mut bad = pod.clone();
    bad.cgroup_parent = format!("{}/cgroup.procs", p.cgroup_parent);
    let e = p.create(&bad, None).await;
    assert_eq!(code(e), Code::INTERNAL);
    // An unknown id.
    let mut st = api::SandboxStatusRequest::new();
    st.sandbox_id = "nope".into();
    assert_eq!(
        code(p.c().sandbox_status(ctx(), &st).await),
        Code::NOT_FOUND
    );
    // Nothing was left by any of it, and the shim still serves.
    assert!(fs::read_dir(p.bundle.path())
        .unwrap()
        .flatten()
        .all(|e| e.file_name() == "address" || e.file_name() == "shim.pid"));
    assert!(mounts_under(p.bundle.path()).is_empty());
    for d in p.cgroup_dirs() {
        let children: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .collect();
        assert!(
            children.is_empty(),
            "cgroup children left under {}",
            d.display()
        );
    }
    p.create(&pod, None).await.unwrap();
    p.start().await;
    assert_eq!(p.status().await.state, "SANDBOX_READY");
    p.remove_and_check().await;
}

#[tokio::test]
async fn parallel_sandboxes_in_separate_shims() {
    if !root() {
        return;
    }
    let mut pods: Vec<Pod> = (0..4).map(|i| Pod::new(&format!("par{i}"))).collect();
    for p in pods.iter_mut() {
        p.launch().await;
    }
    // Create all four at once.
    let tasks: Vec<_> = pods
        .iter()
        .map(|p| {
            let c = p.c().clone();
            let req = p.create_req(&p.pod_config(), None);
            tokio::spawn(async move { c.create_sandbox(ctx(), &req).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut pids = Vec::new();
    for p in pods.iter_mut() {
        pids.push(p.start().await);
    }
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 4);
    for p in &pods {
        assert_eq!(p.status().await.state, "SANDBOX_READY");
    }
    // Stopping one leaves the others alone.
    pods[0].stop(0).await;
    for p in &pods[1..] {
        assert_eq!(p.status().await.state, "SANDBOX_READY");
    }
    for p in pods.iter_mut() {
        p.remove_and_check().await;
    }
}

#[tokio::test]
async fn delete_cleans_up_after_a_dead_shim() {
    if !root() {
        return;
    }
    let mut p = Pod::new("crash");
    let pid = p.run().await;
    p.kill_server();
    assert!(alive(pid), "the pod outlives its shim");
    let d = p.delete();
    assert_eq!(d.pid, pid);
    assert_eq!(d.exit_status, 137);
    assert!(d.exited_at.is_some());
    wait_until("the holder to die", || !alive(pid));
    p.assert_clean();
    // Idempotent.
    let again = p.delete();
    assert_eq!(again.pid, 0);
}

#[tokio::test]
async fn wait_answers_across_a_shim_restart() {
    if !root() {
        return;
    }
    let mut p = Pod::new("restart");
    p.run().await;
    p.stop(0).await;
    let before = p.wait().await;
    p.kill_server();
    // A new shim for the same id picks the persisted state up.
    p.launch().await;
    let after = p.wait().await;
    assert_eq!(after.exit_status, before.exit_status);
    assert_eq!(after.exited_at, before.exited_at);
    assert_eq!(p.status().await.state, "SANDBOX_NOTREADY");
    p.remove_and_check().await;
}

#[tokio::test]
async fn a_running_pod_is_adopted_by_a_restarted_shim() {
    if !root() {
        return;
    }
    let mut p = Pod::new("adopt");
    let pid = p.run().await;
    p.kill_server();
    p.launch().await;
    let st = p.status().await;
    assert_eq!(st.state, "SANDBOX_READY");
    assert_eq!(st.pid, pid);
    p.stop(0).await;
    assert!(!alive(pid));
    p.wait().await;
    p.remove_and_check().await;
}

#[tokio::test]
async fn start_options_and_version() {
    if !root() {
        return;
    }
    let p = Pod::new("opts");
    let out = p.shim().arg("-v").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("containerd-shim-husk-v1 "));
    // Garbage on stdin: start fails clearly and leaves no socket or server.
    let out = p.start_argv(b"\xff\xff\xff\xff garbage");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("runtime options"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!p.socket().exists());
    assert!(p.server_pid().is_none());
    // A raw Any (containerd 2.0–2.2) is accepted.
    let mut any = Any::new();
    any.type_url = "containerd.runc.v1.Options".into();
    let out = p.start_argv(&any.write_to_bytes().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A retried start returns the same address while the shim serves.
    let again = p.start_argv(b"");
    assert_eq!(again.stdout, out.stdout);
    let server = p.server_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_until("the shim to exit on SIGTERM", || !alive(server));
    p.delete();
    assert!(!p.socket().exists());
}

#[tokio::test]
async fn cgroup_v2_driver_on_the_unified_hierarchy() {
    if !root() {
        return;
    }
    let unified = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup/unified")
    };
    if !unified.join("cgroup.procs").exists() {
        eprintln!("\n*** SKIPPED: no cgroup v2 hierarchy mounted ***\n");
        return;
    }
    let mut p = Pod::new("v2");
    p.env.push(("HUSK_CGROUP".into(), "v2".into()));
    let pid = p.run().await;
    let dir = unified
        .join(p.cgroup_parent.trim_start_matches('/'))
        .join(&p.id);
    assert_eq!(
        fs::read_to_string(dir.join("cgroup.procs")).unwrap().trim(),
        pid.to_string()
    );
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.lines()
            .any(|l| l.starts_with("0::") && l.ends_with(&format!("{}/{}", p.cgroup_parent, p.id))),
        "{cg}"
    );
    let mut m = api::SandboxMetricsRequest::new();
    m.sandbox_id = p.id.clone();
    let met = p.c().sandbox_metrics(ctx(), &m).await.unwrap();
    assert_eq!(
        met.metrics.data.type_url,
        "io.containerd.cgroups.v2.Metrics"
    );
    let v2 = containerd_shim_protos::cgroups_v2::metrics::Metrics::parse_from_bytes(
        &met.metrics.data.value,
    )
    .unwrap();
    assert!(
        v2.cpu.usage_usec > 0,
        "cpu.stat is read from the real v2 directory"
    );
    assert_eq!(p.status().await.info["cgroup_version"], "v2");
    p.stop(0).await;
    p.shutdown().await;
    drop(p.client.take());
    p.delete();
    assert!(!dir.exists());
    p.assert_clean();
}

#[tokio::test]
async fn rootfs_mounts_are_made_and_removed() {
    if !root() {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("marker"), "hi").unwrap();
    let mut p = Pod::new("rootfs");
    p.launch().await;
    let mut req = p.create_req(&p.pod_config(), None);
    let mut m = containerd_shim_protos::types::mount::Mount::new();
    m.type_ = "bind".into();
    m.source = src.path().display().to_string();
    m.options = vec!["rbind".into(), "ro".into()];
    req.rootfs.push(m);
    p.c().create_sandbox(ctx(), &req).await.unwrap();
    let rootfs = p.bundle.path().join("rootfs");
    assert_eq!(fs::read_to_string(rootfs.join("marker")).unwrap(), "hi");
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mi
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some(&rootfs.display().to_string()))
        .unwrap();
    assert!(
        line.split_whitespace()
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "read-only: {line}"
    );
    assert!(fs::write(rootfs.join("x"), "no").is_err());
    p.start().await;
    p.shutdown().await;
    drop(p.client.take());
    p.delete();
    assert!(!rootfs.exists());
    assert_eq!(
        fs::read_to_string(src.path().join("marker")).unwrap(),
        "hi",
        "source untouched"
    );
    p.assert_clean();
}

#[tokio::test]
async fn a_bad_mount_fails_create_and_leaves_nothing() {
    if !root() {
        return;
    }
    let mut p = Pod::new("badmount");
    p.launch().await;
    let mut req = p.create_req(&p.pod_config(), None);
    let mut m = containerd_shim_protos::types::mount::Mount::new();
    m.type_ = "bind".into();
    m.source = "/does/not/exist".into();
    m.options = vec!["rbind".into()];
    req.rootfs.push(m);
    assert_eq!(
        code(p.c().create_sandbox(ctx(), &req).await),
        Code::INTERNAL
    );
    assert!(fs::read_dir(p.bundle.path())
        .unwrap()
        .flatten()
        .all(|e| e.file_name() == "address" || e.file_name() == "shim.pid"));
    for d in p.cgroup_dirs() {
        assert!(!d.join(&p.id).exists());
    }
    p.remove_and_check().await;
}

#[tokio::test]
async fn the_holder_reaps_orphans_in_the_pod() {
    if !root() {
        return;
    }
    let mut p = Pod::new("reap");
    let pid = p.run().await;
    // sh runs in the pod's PID namespace, backgrounds a short sleep and
    // exits: the sleep is re-parented to the holder, which must reap it.
    let ok = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-p",
            "--",
            "sh",
            "-c",
            "sleep 0.2 & exit 0",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let children = || -> Vec<(u32, char)> {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|c| {
                let s = fs::read_to_string(format!("/proc/{c}/stat")).ok()?;
                let rest: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
                (rest.get(1)?.parse::<u32>().ok()? == pid)
                    .then(|| (c, rest[0].chars().next().unwrap_or('?')))
            })
            .collect()
    };
    wait_until("the orphan to be adopted", || !children().is_empty());
    wait_until("the orphan to be reaped", || children().is_empty());
    assert_eq!(p.status().await.state, "SANDBOX_READY");
    p.remove_and_check().await;
}

/// Runs the pod's life with a given holder program and checks the kernel
/// runs that program as the pod's PID 1, reaping and exiting 0 on SIGTERM.
async fn holder_runs(p: &mut Pod, want_exe: &Path) {
    let pid = p.run().await;
    assert_eq!(fs::read_link(format!("/proc/{pid}/exe")).unwrap(), want_exe);
    assert_eq!(husk_sandbox::inspect::cmdline(pid), "husk-pause");
    // Less power than a pause container: no capability in any set, no
    // way to gain one, and (husk-pause) a seccomp filter.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("{k} in /proc/{pid}/status"))
    };
    for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(k), "0000000000000000", "{k}");
    }
    assert_eq!(field("NoNewPrivs"), "1");
    let tiny = want_exe.file_name() == Some(std::ffi::OsStr::new("husk-pause"));
    assert_eq!(field("Seccomp"), if tiny { "2" } else { "0" }, "Seccomp");
    let ok = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-p",
            "--",
            "sh",
            "-c",
            "sleep 0.1 & exit 0",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::thread::sleep(Duration::from_millis(300));
    let zombies = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|c| {
            let s = fs::read_to_string(format!("/proc/{c}/stat")).unwrap_or_default();
            let rest: Vec<&str> = s
                .rsplit_once(')')
                .map(|r| r.1.split_whitespace().collect())
                .unwrap_or_default();
            rest.get(1).and_then(|pp| pp.parse::<u32>().ok()) == Some(pid)
                && rest.first() == Some(&"Z")
        })
        .count();
    assert_eq!(zombies, 0, "the holder reaps orphans");
    p.stop(5).await;
    assert_eq!(p.wait().await.exit_status, 0, "exits 0 on SIGTERM");
    p.remove_and_check().await;
}

#[tokio::test]
async fn the_tiny_pause_program_holds_the_pod() {
    if !root() {
        return;
    }
    let Some(pause) = std::env::var_os("HUSK_PAUSE_BIN").map(PathBuf::from) else {
        eprintln!(
            "\n*** SKIPPED: no tiny pause program (set HUSK_PAUSE_BIN; scripts/test.sh does) ***\n"
        );
        return;
    };
    let mut p = Pod::new("tinypause");
    p.env
        .push(("HUSK_PAUSE".into(), pause.display().to_string()));
    holder_runs(&mut p, &pause).await;
}

#[tokio::test]
async fn without_husk_pause_the_shim_binary_holds_the_pod() {
    if !root() {
        return;
    }
    let mut p = Pod::new("selfpause");
    holder_runs(&mut p, &fs::canonicalize(SHIM).unwrap()).await;
}

#[tokio::test]
async fn delete_right_after_start_leaves_no_server() {
    if !root() {
        return;
    }
    // containerd runs delete at once when a start-then-create fails; the
    // server may not have written shim.pid yet.
    for i in 0..5 {
        let p = Pod::new(&format!("race{i}"));
        let out = p.start_argv(b"");
        assert!(out.status.success());
        p.delete();
        assert!(p.server_pid().is_none(), "server left after delete");
        assert!(!p.socket().exists());
    }
}

#[tokio::test]
async fn start_takes_bootstrap_params_from_containerd_2_3() {
    if !root() {
        return;
    }
    use containerd_shim_protos::bootstrap_api::{BootstrapParams, Extension};
    let mut p = Pod::new("bootparams");
    let mut params = BootstrapParams::new();
    params.instance_id = p.id.clone();
    params.namespace = p.ns.clone();
    params.containerd_version = "2.3.0".into();
    let mut ext = Extension::new();
    let mut any = Any::new();
    any.type_url = "containerd.io/cri.v1.PodSandboxConfig".into();
    ext.value = MessageField::some(any);
    params.extensions.push(ext);
    let out = p.start_argv(&params.write_to_bytes().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = ttrpc::asynchronous::Client::connect(reply["address"].as_str().unwrap())
        .await
        .unwrap();
    p.client = Some(SandboxClient::new(c));
    p.create(&p.pod_config(), None).await.unwrap();
    p.start().await;
    assert_eq!(p.status().await.state, "SANDBOX_READY");
    p.remove_and_check().await;

    // BootstrapParams for another namespace than -namespace is refused.
    let q = Pod::new("bootparams-ns");
    let mut params = BootstrapParams::new();
    params.instance_id = q.id.clone();
    params.namespace = "elsewhere".into();
    let out = q.start_argv(&params.write_to_bytes().unwrap());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("namespace"));
    assert!(q.server_pid().is_none());
}

#[tokio::test]
async fn a_shim_nobody_talks_to_exits_on_its_own() {
    if !root() {
        return;
    }
    // containerd may die between `start` and CreateSandbox: the shim must
    // not stay forever with nothing to serve.
    let mut p = Pod::new("idle");
    p.env.push(("HUSK_IDLE_EXIT_SECS".into(), "1".into()));
    let out = p.start_argv(b"");
    assert!(out.status.success());
    let server = p.server_pid().expect("server runs");
    wait_until("the idle shim to exit", || !alive(server));
    assert!(!p.socket().exists());
    // One that holds a sandbox stays, even with no client.
    let mut q = Pod::new("busy");
    q.env.push(("HUSK_IDLE_EXIT_SECS".into(), "1".into()));
    q.launch().await;
    q.create(&q.pod_config(), None).await.unwrap();
    q.start().await;
    let c = q.client.take();
    drop(c);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(q.server_pid().is_some(), "a shim with a sandbox stays");
    q.launch().await;
    q.remove_and_check().await;
}

#[tokio::test]
async fn delete_of_a_live_shim_leaves_nothing() {
    if !root() {
        return;
    }
    // containerd gave up on a shim that still runs its pod: delete must end
    // the server before the holder, or the server would write its state
    // back after delete removed it.
    let mut p = Pod::new("livedelete");
    let pid = p.run().await;
    drop(p.client.take());
    let d = p.delete();
    assert_eq!(d.pid, pid);
    wait_until("the holder to die", || !alive(pid));
    std::thread::sleep(Duration::from_millis(100));
    p.assert_clean();
}

#[test]
fn info_reports_the_oci_runtimes_features() {
    if !root() {
        return;
    }
    use containerd_shim_protos::types::introspection::RuntimeInfo;
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("runc installed (scripts/containerd-env.sh installs it)");
    // The options containerd passes on stdin: CRI's runtimeoptions with TOML.
    let body = format!("BinaryName = '{runc}'\n");
    let mut opts = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
    opts.type_url = "runtimeoptions.v1.Options".into();
    opts.value = [vec![3 << 3 | 2, body.len() as u8], body.into_bytes()].concat();
    let mut child = Command::new(SHIM)
        .arg("-info")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&opts.write_to_bytes().unwrap())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let info = RuntimeInfo::parse_from_bytes(&out.stdout).unwrap();
    assert_eq!(info.name, "io.containerd.husk.v1");
    assert_eq!(info.options.type_url, "runtimeoptions.v1.Options");
    let f: serde_json::Value = serde_json::from_slice(&info.features.value).unwrap();
    assert!(
        f["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "rro"),
        "runc 1.1's features say it supports recursive read-only mounts"
    );
    // husk's own runtime (no options, no config) reports its own.
    let own = Command::new(SHIM)
        .arg("-info")
        .env("HUSK_CONFIG", "/nonexistent")
        .env("PATH", "/nonexistent")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(own.status.success());
    let info = RuntimeInfo::parse_from_bytes(&own.stdout).unwrap();
    let f: serde_json::Value = serde_json::from_slice(&info.features.value).unwrap();
    assert_eq!(f["ociVersionMax"], "1.2.1");
    assert!(f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "rro"));
    // A runtime binary that is not there is a clear error.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runtime.toml");
    std::fs::write(&config, "BinaryName = 'runc'\n").unwrap();
    let bad = Command::new(SHIM)
        .arg("-info")
        .env("HUSK_CONFIG", &config)
        .env("PATH", "/nonexistent")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("runc"));
}

/// A ttrpc PingSandbox request from a process of the given uid, through
/// python3 (another uid needs another process); prints how many bytes of
/// answer came back before the server closed the connection.
fn ping_as(uid: u32, sock: &Path) -> usize {
    use std::os::unix::process::CommandExt;
    const CLIENT: &str = r#"
import socket, struct, sys
def field(n, b): return bytes([n << 3 | 2, len(b)]) + b
req = (field(1, b"containerd.runtime.sandbox.v1.Sandbox") + field(2, b"PingSandbox")
       + field(3, field(1, b"nobody-here")))
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(5)
got = b""
try:
    # A refused peer may find the connection closed before it writes.
    s.sendall(struct.pack(">IIBB", len(req), 1, 1, 0) + req)
    while len(got) < 10:
        b = s.recv(4096)
        if not b: break
        got += b
except (BrokenPipeError, ConnectionResetError, socket.timeout):
    pass
print(len(got))
"#;
    let out = Command::new("python3")
        .args(["-c", CLIENT])
        .arg(sock)
        .uid(uid)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test]
async fn only_root_or_the_socket_owner_may_call() {
    if !root() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let p = Pod::new("peercred");
    let out = p.start_argv(b"");
    assert!(out.status.success());
    let sock = p.socket();
    // Open every path to the socket, so that only the shim's own check on
    // the peer's credentials stands in the way of another user.
    for d in [
        p.run_root.path().to_path_buf(),
        sock.parent().unwrap().to_path_buf(),
    ] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).unwrap();
    assert!(ping_as(0, &sock) >= 10, "root gets an answer");
    assert_eq!(ping_as(65534, &sock), 0, "another user is turned away");
    assert!(ping_as(0, &sock) >= 10, "and the server still serves");
    p.delete();
    assert!(p.server_pid().is_none());
}

#[tokio::test]
async fn the_server_runs_without_the_allocators_thread_cache() {
    if !root() {
        return;
    }
    let p = Pod::new("tunables");
    let out = p.start_argv(b"");
    assert!(out.status.success());
    let pid = p.server_pid().expect("server");
    let env = fs::read(format!("/proc/{pid}/environ")).unwrap();
    let has = env
        .split(|b| *b == 0)
        .any(|kv| kv == b"GLIBC_TUNABLES=glibc.malloc.tcache_count=0");
    p.delete();
    assert!(has, "GLIBC_TUNABLES in the server's environment");
}

/// Fault: the sandbox record is damaged while the pod runs and its shim is
/// gone. A restarted shim does not trust it (the sandbox is NotFound
/// there, and the server serves on); `shim delete` salvages the pod from
/// the kernel: holder killed, cgroup and mounts gone, pod files and record
/// removed. Another pod beside it is untouched.
#[tokio::test]
async fn a_damaged_record_is_salvaged_not_trusted() {
    if !root() {
        return;
    }
    let mut other = Pod::new("bystander");
    let other_pid = other.run().await;
    type Damage<'a> = &'a dyn Fn(&[u8]) -> Vec<u8>;
    let damages: [(&str, Damage); 3] = [
        ("truncated", &|b: &[u8]| b[..b.len() / 2].to_vec()),
        ("empty", &|_: &[u8]| Vec::new()),
        // Valid JSON, but it names a file outside the bundle: refused.
        ("tampered", &|b: &[u8]| {
            let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
            v["files"] = serde_json::json!(["/etc/hostname"]);
            serde_json::to_vec(&v).unwrap()
        }),
    ];
    for (what, damage) in damages {
        let mut p = Pod::new(&format!("damaged-{what}"));
        let mut rootfs = containerd_shim_protos::types::mount::Mount::new();
        rootfs.type_ = "tmpfs".into();
        rootfs.source = "tmpfs".into();
        p.launch().await;
        let mut req = p.create_req(&p.pod_config(), None);
        req.rootfs.push(rootfs);
        p.c().create_sandbox(ctx(), &req).await.unwrap();
        let pid = p.start().await;
        p.kill_server();
        let state = p
            .run_root
            .path()
            .join("state")
            .join(&p.ns)
            .join(&p.id)
            .join("state.json");
        let good = fs::read(&state).unwrap();
        fs::write(&state, damage(&good)).unwrap();
        // A new shim for the id serves, and does not know the sandbox.
        p.launch().await;
        let mut r = api::SandboxStatusRequest::new();
        r.sandbox_id = p.id.clone();
        assert_eq!(
            code(p.c().sandbox_status(ctx(), &r).await),
            Code::NOT_FOUND,
            "{what}"
        );
        assert!(alive(pid), "{what}: the holder is left for delete");
        drop(p.client.take());
        let d = p.delete();
        assert_eq!(d.pid, 0, "{what}: no pid is known without the record");
        wait_until("the holder to die", || !alive(pid));
        assert!(
            Path::new("/etc/hostname").exists(),
            "salvage stays in the bundle"
        );
        p.assert_clean();
        p.remove_parent();
        assert!(alive(other_pid), "{what}: another pod is untouched");
    }
    assert_eq!(other.status().await.state, "SANDBOX_READY");
    other.stop(0).await;
    other.remove_and_check().await;
}

/// Fault: `kill -9` of the shim while CreateSandbox or StartSandbox is in
/// flight, at delays spread over the call's own duration. containerd sees
/// the call fail ("ttrpc: closed") and runs `shim delete`; after it,
/// nothing of the sandbox is left, whatever step the kill landed on, and
/// a pod beside it runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_shim_mid_create_or_start_leaves_nothing_after_delete() {
    if !root() {
        return;
    }
    let mut other = Pod::new("bystander-kill");
    let other_pid = other.run().await;
    let mut landed = std::collections::BTreeMap::new();
    for phase in ["create", "start"] {
        // Spread over the call's own duration (a few ms each in a debug
        // build); the call runs on another worker while this one sleeps.
        let step = if phase == "create" { 600 } else { 400 };
        for (n, delay_us) in (0..12u64).map(|i| i * step).enumerate() {
            let mut p = Pod::new(&format!("k9-{phase}-{n}"));
            p.launch().await;
            let client = p.c().clone();
            let req = p.create_req(&p.pod_config(), None);
            if phase == "start" {
                client.create_sandbox(ctx(), &req).await.unwrap();
            }
            let id = p.id.clone();
            let call = tokio::spawn(async move {
                if phase == "create" {
                    client.create_sandbox(ctx(), &req).await.map(|_| ())
                } else {
                    let mut r = api::StartSandboxRequest::new();
                    r.sandbox_id = id;
                    client.start_sandbox(ctx(), &r).await.map(|_| ())
                }
            });
            std::thread::sleep(Duration::from_micros(delay_us));
            p.kill_server();
            let outcome = if call.await.unwrap().is_ok() {
                "finished before the kill"
            } else {
                "killed mid-call"
            };
            *landed.entry((phase, outcome)).or_insert(0) += 1;
            // A holder the call may have started: found by the pod's
            // cgroup, so assert_clean can check it is gone.
            let holders: Vec<u32> = p
                .cgroup_dirs()
                .iter()
                .filter_map(|d| fs::read_to_string(d.join(&p.id).join("cgroup.procs")).ok())
                .flat_map(|t| {
                    t.lines()
                        .filter_map(|l| l.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect();
            p.delete();
            for h in holders {
                wait_until("the holder to die", || !alive(h));
            }
            p.assert_clean();
            p.remove_parent();
            assert!(alive(other_pid), "another pod is untouched");
        }
    }
    eprintln!("kill -9 mid-call: {landed:?}");
    assert_eq!(other.status().await.state, "SANDBOX_READY");
    other.stop(0).await;
    other.remove_and_check().await;
}

/// Fault: the state directory is full (a 256 KiB tmpfs as HUSK_RUN_ROOT).
/// CreateSandbox fails with an error that says so, undoes every step
/// (cgroup, pod files, mounts), and the shim serves on; once there is
/// room again the same sandbox is created and runs.
#[tokio::test]
async fn a_full_state_directory_fails_create_and_leaves_nothing() {
    if !root() {
        return;
    }
    let mut p = Pod::new("full");
    let root_dir = p.run_root.path().to_path_buf();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "husk-full"])
        .arg(&root_dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount a small tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(root_dir.clone());
    p.launch().await;
    // Fill what is left of it.
    let fill = root_dir.join("fill");
    let mut f = fs::File::create(&fill).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let e = p.create(&p.pod_config(), None).await.unwrap_err();
    let msg = format!("{e:?}");
    assert!(msg.contains("No space left on device"), "{msg}");
    p.assert_nothing_made();
    let mut r = api::PingRequest::new();
    r.sandbox_id = p.id.clone();
    assert_eq!(code(p.c().ping_sandbox(ctx(), &r).await), Code::NOT_FOUND);
    // Room again: the same request now succeeds.
    fs::remove_file(&fill).unwrap();
    p.create(&p.pod_config(), None).await.unwrap();
    p.start().await;
    p.stop(0).await;
    p.remove_and_check().await;
}

/// Fault: the network namespace containerd made is removed (CNI teardown
/// racing) before CreateSandbox: InvalidArgument naming the path, nothing
/// made, and the shim serves on.
#[tokio::test]
async fn a_netns_removed_before_create_is_invalid_and_leaves_nothing() {
    if !root() {
        return;
    }
    let mut p = Pod::new("gone-netns");
    p.launch().await;
    let ns = Netns::new("gone");
    let path = ns.path();
    drop(ns); // ip netns del: unmounted and unlinked
    assert!(!path.exists());
    let e = p.create(&p.pod_config(), Some(&path)).await;
    let msg = format!("{e:?}");
    assert_eq!(code(e), Code::INVALID_ARGUMENT);
    assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
    p.assert_nothing_made();
    p.create(&p.pod_config(), None).await.unwrap();
    p.start().await;
    p.stop(0).await;
    p.remove_and_check().await;
}
