//! The engine's state machine and cleanup, through the fake OS (no root).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use husk_sandbox::os::fake::FakeOs;
use husk_sandbox::{
    CreateRequest, Dns, Engine, Error, Host, Mount, NsMode, Phase, PodConfig, StateStore,
};

struct Env {
    os: FakeOs,
    engine: Arc<Engine>,
    bundle: tempfile::TempDir,
    state: tempfile::TempDir,
}

fn env() -> Env {
    let os = FakeOs::new();
    let state = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::new(Host::fake(&os), StateStore::new(state.path())));
    Env {
        os,
        engine,
        bundle: tempfile::tempdir().unwrap(),
        state,
    }
}

impl Env {
    fn req(&self, id: &str) -> CreateRequest {
        let bundle = self.bundle.path().join(id);
        std::fs::create_dir_all(&bundle).unwrap();
        CreateRequest {
            id: id.into(),
            bundle,
            rootfs: vec![],
            netns_path: None,
            pod: PodConfig {
                hostname: "pod-host".into(),
                dns: Some(Dns {
                    servers: vec!["10.0.0.10".into()],
                    searches: vec!["svc.local".into()],
                    options: vec!["ndots:2".into()],
                }),
                ..Default::default()
            },
            annotations: Default::default(),
        }
    }

    /// Nothing the sandbox made remains: processes, cgroups, mounts, files, state.
    fn assert_clean(&self, id: &str) {
        assert!(
            self.os.live_pids().is_empty(),
            "live processes {:?}",
            self.os.live_pids()
        );
        assert!(
            self.os.cgroup_dirs().is_empty(),
            "cgroups {:?}",
            self.os.cgroup_dirs()
        );
        assert!(
            self.os.mounted().is_empty(),
            "mounts {:?}",
            self.os.mounted()
        );
        let b = self.bundle.path().join(id);
        let left: Vec<PathBuf> = std::fs::read_dir(&b)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "bundle files {left:?}");
        assert!(!self.state.path().join(id).exists(), "state dir left");
    }
}

fn is_invalid<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::InvalidArgument(_)))
}

#[tokio::test]
async fn full_lifecycle() {
    let e = env();
    e.engine.create(e.req("p1")).await.unwrap();
    let b = e.bundle.path().join("p1");
    assert_eq!(
        std::fs::read_to_string(b.join("hostname")).unwrap(),
        "pod-host\n"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("resolv.conf")).unwrap(),
        "search svc.local\nnameserver 10.0.0.10\noptions ndots:2\n"
    );
    assert!(std::fs::read_to_string(b.join("hosts"))
        .unwrap()
        .contains("localhost"));
    assert_eq!(e.os.mounted(), vec![b.join("shm")]);
    let st = e.engine.status("p1", false).unwrap();
    assert!(!st.ready);
    assert_eq!(st.phase, Phase::Created);
    assert!(e.engine.ping("p1").is_err());

    let started = e.engine.start("p1").await.unwrap();
    assert!(e.os.alive(started.pid));
    let st = e.engine.status("p1", true).unwrap();
    assert!(st.ready);
    assert_eq!(st.pid, started.pid);
    assert_eq!(st.info["holder_state"], "S");
    assert_eq!(st.info["ns.net"], format!("/proc/{}/ns/net", started.pid));
    e.engine.ping("p1").unwrap();
    assert_eq!(e.engine.platform("p1").unwrap().os, "linux");
    e.engine.metrics("p1").unwrap();

    let waiter = {
        let eng = e.engine.clone();
        tokio::spawn(async move { eng.wait("p1").await })
    };
    e.engine.stop("p1", Duration::from_secs(5)).await.unwrap();
    let exit = waiter.await.unwrap().unwrap();
    assert_eq!(exit.status, 0, "holder exits 0 on SIGTERM");
    assert!(!e.os.alive(started.pid));
    let st = e.engine.status("p1", false).unwrap();
    assert!(!st.ready);
    assert_eq!(st.exited_at, Some(exit.at));
    // Wait after the exit answers at once, every time.
    assert_eq!(e.engine.wait("p1").await.unwrap(), exit);
    // Stop is idempotent.
    e.engine.stop("p1", Duration::ZERO).await.unwrap();
    assert!(matches!(
        e.engine.ping("p1"),
        Err(Error::FailedPrecondition { .. })
    ));
    assert!(matches!(
        e.engine.start("p1").await,
        Err(Error::FailedPrecondition { .. })
    ));

    assert_eq!(e.engine.shutdown("p1").await.unwrap(), 0);
    e.assert_clean("p1");
    // Shutdown again: containerd retries, so it succeeds.
    assert_eq!(e.engine.shutdown("p1").await.unwrap(), 0);
    assert!(matches!(
        e.engine.status("p1", false),
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn start_twice_returns_the_same_holder() {
    let e = env();
    e.engine.create(e.req("p")).await.unwrap();
    let (a, b) = tokio::join!(e.engine.start("p"), e.engine.start("p"));
    assert_eq!(a.unwrap().pid, b.unwrap().pid);
    assert_eq!(e.os.holders().len(), 1);
    e.engine.shutdown("p").await.unwrap();
    e.assert_clean("p");
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let e = env();
    assert!(matches!(
        e.engine.start("nope").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        e.engine.stop("nope", Duration::ZERO).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        e.engine.wait("nope").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        e.engine.status("nope", true),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(e.engine.ping("nope"), Err(Error::NotFound(_))));
    assert!(matches!(e.engine.platform("nope"), Err(Error::NotFound(_))));
    assert!(matches!(e.engine.metrics("nope"), Err(Error::NotFound(_))));
    // A malformed id is bad input, not an unknown sandbox.
    assert!(is_invalid(e.engine.status("", false)));
    assert!(is_invalid(e.engine.stop("../x", Duration::ZERO).await));
    // Shutdown of a shim that holds nothing succeeds: it follows a failed Create.
    assert_eq!(e.engine.shutdown("nope").await.unwrap(), 0);
    e.engine.create(e.req("other")).await.unwrap();
    assert!(matches!(
        e.engine.shutdown("nope").await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn duplicates_are_rejected_and_harmless() {
    let e = env();
    e.engine.create(e.req("d")).await.unwrap();
    let pid = e.engine.start("d").await.unwrap().pid;
    assert!(matches!(
        e.engine.create(e.req("d")).await,
        Err(Error::AlreadyExists(_))
    ));
    assert!(e.engine.status("d", false).unwrap().ready);
    assert!(e.os.alive(pid));
    e.engine.shutdown("d").await.unwrap();
    e.assert_clean("d");
}

#[tokio::test]
async fn bad_input_is_invalid_argument_and_leaves_nothing() {
    let e = env();
    for id in ["", "a/b", "..", &"x".repeat(77), "-x"] {
        let mut r = e.req("ok");
        r.id = id.to_string();
        assert!(is_invalid(e.engine.create(r).await), "id {id:?}");
    }
    let mut r = e.req("b1");
    r.bundle = PathBuf::from("relative/bundle");
    assert!(is_invalid(e.engine.create(r).await));
    let mut r = e.req("b2");
    r.bundle = e.bundle.path().join("missing");
    assert!(is_invalid(e.engine.create(r).await));
    let mut r = e.req("n1");
    r.netns_path = Some("/proc/self/ns/not-a-netns".into());
    assert!(is_invalid(e.engine.create(r).await));
    let mut r = e.req("n2");
    r.netns_path = Some("relative".into());
    assert!(is_invalid(e.engine.create(r).await));
    let mut r = e.req("n3");
    e.os.add_netns("/run/netns/x");
    r.netns_path = Some("/run/netns/x".into());
    r.pod.network = NsMode::Node;
    assert!(
        is_invalid(e.engine.create(r).await),
        "netns given with host networking"
    );
    let mut r = e.req("h1");
    r.pod.hostname = "bad host".into();
    assert!(is_invalid(e.engine.create(r).await));
    let mut r = e.req("dns");
    r.pod.dns = Some(Dns {
        servers: vec!["nope".into()],
        ..Default::default()
    });
    assert!(is_invalid(e.engine.create(r).await));
    let mut r = e.req("s1");
    r.pod.sysctls.insert("kernel.hostname".into(), "x".into());
    assert!(is_invalid(e.engine.create(r).await));
    let mut r = e.req("s2");
    r.pod.network = NsMode::Node;
    r.pod
        .sysctls
        .insert("net.ipv4.ip_forward".into(), "1".into());
    assert!(is_invalid(e.engine.create(r).await));
    let mut r = e.req("c1");
    r.pod.cgroup_parent = "/kubepods/../../etc".into();
    assert!(is_invalid(e.engine.create(r).await));
    let mut r = e.req("r1");
    r.rootfs = vec![Mount {
        kind: "bind".into(),
        source: "/tmp".into(),
        target: "../../etc".into(),
        options: vec![],
    }];
    assert!(is_invalid(e.engine.create(r).await));
    let mut r = e.req("r2");
    r.rootfs = vec![Mount {
        kind: "".into(),
        source: "".into(),
        target: "".into(),
        options: vec![],
    }];
    assert!(is_invalid(e.engine.create(r).await));
    assert_eq!(e.engine.len(), 0);
    assert!(e.os.cgroup_dirs().is_empty());
    assert!(e.os.mounted().is_empty());
    assert!(
        !e.os.calls().contains(&"cgroup.create".to_string()),
        "validation happens before any effect"
    );
}

#[tokio::test]
async fn a_failure_halfway_through_create_leaves_nothing() {
    for op in ["cgroup.create", "mount", "mount_shm"] {
        let e = env();
        let mut r = e.req("f");
        r.rootfs = vec![Mount {
            kind: "bind".into(),
            source: "/src".into(),
            target: "".into(),
            options: vec!["rbind".into()],
        }];
        e.os.fail_next(op);
        let err = e.engine.create(r).await.unwrap_err();
        assert!(matches!(err, Error::Os { .. }), "{op}: {err}");
        e.assert_clean("f");
        assert_eq!(e.engine.len(), 0);
        // The engine keeps serving: the same id works afterwards.
        e.engine.create(e.req("f")).await.unwrap();
        e.engine.start("f").await.unwrap();
        e.engine.shutdown("f").await.unwrap();
        e.assert_clean("f");
    }
}

#[tokio::test]
async fn a_failed_start_keeps_the_sandbox_created_and_shutdown_cleans_it() {
    let e = env();
    e.engine.create(e.req("s")).await.unwrap();
    e.os.fail_next("spawn");
    assert!(matches!(e.engine.start("s").await, Err(Error::Os { .. })));
    assert_eq!(e.engine.status("s", false).unwrap().phase, Phase::Created);
    e.engine.shutdown("s").await.unwrap();
    e.assert_clean("s");
}

#[tokio::test]
async fn stop_kills_what_ignores_sigterm() {
    let e = env();
    let r = e.req("k");
    e.engine.create(r).await.unwrap();
    let holder = e.engine.start("k").await.unwrap().pid;
    let stubborn = e.os.add_stubborn(Path::new("/husk/k"));
    e.engine.stop("k", Duration::from_secs(1)).await.unwrap();
    assert!(!e.os.alive(stubborn), "SIGKILL after the grace period");
    assert!(!e.os.alive(holder));
    assert_eq!(e.engine.wait("k").await.unwrap().status, 0);
    e.engine.shutdown("k").await.unwrap();
    e.assert_clean("k");
}

#[tokio::test]
async fn zero_timeout_means_no_grace() {
    let e = env();
    e.engine.create(e.req("z")).await.unwrap();
    e.engine.start("z").await.unwrap();
    let stubborn = e.os.add_stubborn(Path::new("/husk/z"));
    e.engine.stop("z", Duration::ZERO).await.unwrap();
    assert!(!e.os.alive(stubborn));
    e.engine.shutdown("z").await.unwrap();
}

#[tokio::test]
async fn wait_reports_a_kill_from_outside_to_every_waiter() {
    let e = env();
    e.engine.create(e.req("w")).await.unwrap();
    let pid = e.engine.start("w").await.unwrap().pid;
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let eng = e.engine.clone();
            tokio::spawn(async move { eng.wait("w").await })
        })
        .collect();
    tokio::task::yield_now().await;
    e.os.kill_from_outside(pid);
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap().status, 137);
    }
    assert!(!e.engine.status("w", false).unwrap().ready);
    e.engine.shutdown("w").await.unwrap();
    e.assert_clean("w");
}

#[tokio::test]
async fn wait_on_a_created_sandbox_returns_after_stop() {
    let e = env();
    e.engine.create(e.req("c")).await.unwrap();
    let eng = e.engine.clone();
    let w = tokio::spawn(async move { eng.wait("c").await });
    e.engine.stop("c", Duration::ZERO).await.unwrap();
    assert_eq!(w.await.unwrap().unwrap().status, 0);
    e.engine.shutdown("c").await.unwrap();
}

#[tokio::test]
async fn namespace_options_shape_the_holder() {
    let e = env();
    let mut r = e.req("host");
    r.pod.network = NsMode::Node;
    r.pod.pid = NsMode::Node;
    r.pod.ipc = NsMode::Node;
    e.engine.create(r).await.unwrap();
    e.engine.start("host").await.unwrap();
    let mut r = e.req("join");
    e.os.add_netns("/run/netns/j");
    r.netns_path = Some("/run/netns/j".into());
    r.pod
        .sysctls
        .insert("net.ipv4.ip_forward".into(), "1".into());
    e.engine.create(r).await.unwrap();
    e.engine.start("join").await.unwrap();
    let h = e.os.holders();
    assert!(
        !h[0].new_net && !h[0].new_uts && !h[0].new_pid && !h[0].new_ipc && h[0].hostname.is_none()
    );
    assert!(
        !e.bundle.path().join("host/shm").exists(),
        "host IPC pods get no private shm"
    );
    assert_eq!(h[1].join_netns.as_deref(), Some(Path::new("/run/netns/j")));
    assert!(!h[1].new_net && h[1].new_uts && h[1].new_pid && h[1].new_ipc);
    assert_eq!(h[1].hostname.as_deref(), Some("pod-host"));
    assert_eq!(
        h[1].sysctls,
        vec![("net.ipv4.ip_forward".to_string(), "1".to_string())]
    );
    assert_eq!(e.engine.len(), 2);
    assert_eq!(e.engine.shutdown("host").await.unwrap(), 1);
    assert_eq!(e.engine.shutdown("join").await.unwrap(), 0);
}

#[tokio::test]
async fn state_survives_a_shim_restart() {
    let e = env();
    e.engine.create(e.req("r")).await.unwrap();
    let pid = e.engine.start("r").await.unwrap().pid;
    e.engine.stop("r", Duration::ZERO).await.unwrap();
    let exit = e.engine.wait("r").await.unwrap();
    // A new engine over the same state store: the restarted shim.
    let again = Engine::new(Host::fake(&e.os), StateStore::new(e.state.path()));
    assert!(again.restore("r").unwrap());
    let w = again.wait("r").await.unwrap();
    assert_eq!(w.status, exit.status);
    assert_eq!(w.at, exit.at);
    let st = again.status("r", false).unwrap();
    assert_eq!(st.pid, pid);
    assert!(!st.ready);
    again.shutdown("r").await.unwrap();
    e.assert_clean("r");
}

#[tokio::test]
async fn a_running_holder_is_adopted_after_a_restart() {
    let e = env();
    e.engine.create(e.req("a")).await.unwrap();
    let pid = e.engine.start("a").await.unwrap().pid;
    let again = Arc::new(Engine::new(
        Host::fake(&e.os),
        StateStore::new(e.state.path()),
    ));
    assert!(again.restore("a").unwrap());
    assert!(again.status("a", false).unwrap().ready);
    let eng = again.clone();
    let w = tokio::spawn(async move { eng.wait("a").await });
    e.os.kill_from_outside(pid);
    assert_eq!(
        w.await.unwrap().unwrap().status,
        husk_sandbox::engine::UNKNOWN_EXIT
    );
}
