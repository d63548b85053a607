//! End-to-end: containers in husk pods through a real containerd 2.1 on
//! the CRI path (handler `husk`, netns + CNI), each checking that nothing
//! is left afterwards. Needs `scripts/containerd-env.sh up`; without it
//! every test prints a loud SKIPPED line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use husk_e2e::*;
use k8s_cri::v1::{ContainerState, LinuxContainerResources, NamespaceMode, PodSandboxConfig};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Pod {
    id: String,
    config: PodSandboxConfig,
    husk: HuskPod,
    logs: tempfile::TempDir,
}

async fn pod(env: &Env, cri: &mut Cri, name: &str) -> Pod {
    let logs = tempfile::tempdir().unwrap();
    let mut config = pod_config(env, name, &uid(name), false);
    config.log_directory = logs.path().display().to_string();
    let id = run_pod(cri, config.clone(), "husk").await.unwrap();
    let (_, info) = pod_status(cri, &id).await.unwrap();
    let husk = HuskPod::from_info(&id, &info).unwrap();
    Pod {
        id,
        config,
        husk,
        logs,
    }
}

/// What a container leaves on the host while it lives.
struct Traces {
    id: String,
    pid: u32,
    cgroup: Option<PathBuf>,
}

async fn traces(cri: &mut Cri, id: &str) -> Traces {
    let (_, info) = container_status(cri, id).await.unwrap();
    let pid = info["pid"].as_u64().unwrap_or(0) as u32;
    Traces {
        id: id.into(),
        pid,
        cgroup: memory_cgroup_of(pid),
    }
}

impl Traces {
    async fn assert_gone(&self) {
        let pid = self.pid;
        eventually("the container's init to go", 10, || !alive(pid))
            .await
            .unwrap();
        if let Some(cg) = &self.cgroup {
            assert!(!cg.exists(), "container cgroup {} left", cg.display());
        }
        let runc_state = husk_shim::paths::runtime_root("k8s.io").join(&self.id);
        assert!(
            !runc_state.exists(),
            "runc state {} left",
            runc_state.display()
        );
        assert!(
            mounts_mentioning(&self.id).is_empty(),
            "mounts left: {:?}",
            mounts_mentioning(&self.id)
        );
    }
}

async fn remove_pod_checked(cri: &mut Cri, p: &Pod) {
    stop_pod(cri, &p.id).await.unwrap();
    remove_pod(cri, &p.id).await.unwrap();
    p.husk.assert_gone().await.unwrap();
}

#[tokio::test]
async fn containers_run_exit_log_and_exec() {
    let Some(env) = test_env() else { return };
    let _g = SERIAL.lock().await;
    let mut cri = connect(&env.socket).await.unwrap();
    let p = pod(&env, &mut cri, "ctr-basics").await;

    // Exit codes 0 and 3, and the log in CRI format.
    let c0 = run_container(
        &mut cri,
        &p.id,
        &p.config,
        container_config(&env, "zero", "echo out-line; echo err-line >&2; exit 0"),
    )
    .await
    .unwrap();
    let c3 = run_container(
        &mut cri,
        &p.id,
        &p.config,
        container_config(&env, "three", "exit 3"),
    )
    .await
    .unwrap();
    assert_eq!(wait_exited(&mut cri, &c0, 10).await.unwrap().exit_code, 0);
    let st3 = wait_exited(&mut cri, &c3, 10).await.unwrap();
    assert_eq!(st3.exit_code, 3);
    assert_eq!(st3.reason, "Error");
    let log = fs::read_to_string(p.logs.path().join("zero.log")).unwrap();
    let mut lines: Vec<Vec<&str>> = log.lines().map(|l| l.splitn(4, ' ').collect()).collect();
    assert_eq!(lines.len(), 2, "{log}");
    // <RFC3339Nano> <stream> <P|F> <content>; the two streams are copied
    // independently, so their order in the file is not defined.
    lines.sort_by_key(|f| f[1]);
    for f in &lines {
        assert!(f[0].contains('T') && f[0].ends_with('Z'), "{log}");
    }
    assert_eq!(
        (lines[0][1], lines[0][2], lines[0][3]),
        ("stderr", "F", "err-line")
    );
    assert_eq!(
        (lines[1][1], lines[1][2], lines[1][3]),
        ("stdout", "F", "out-line")
    );
    for c in [&c0, &c3] {
        remove_container(&mut cri, c).await.unwrap();
    }

    // ExecSync: stdout, stderr, exit code; and a timeout.
    let c = run_container(
        &mut cri,
        &p.id,
        &p.config,
        container_config(&env, "long", "exec sleep 1000"),
    )
    .await
    .unwrap();
    let t = traces(&mut cri, &c).await;
    assert!(t.pid > 0 && t.cgroup.as_ref().is_some_and(|d| d.exists()));
    let (code, out, err) = exec_sync(
        &mut cri,
        &c,
        &["sh", "-c", "echo o; echo e >&2; exit 7"],
        10,
    )
    .await
    .unwrap();
    assert_eq!((code, out.as_str(), err.as_str()), (7, "o\n", "e\n"));
    let t0 = std::time::Instant::now();
    let r = exec_sync(&mut cri, &c, &["sleep", "30"], 1).await;
    assert!(r.is_err(), "a timed-out ExecSync is an error: {r:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // The container is still serving, and the timed-out exec is gone.
    let (code, out, _) = exec_sync(
        &mut cri,
        &c,
        &["sh", "-c", "ps -o comm | grep -c sleep"],
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        (code, out.trim()),
        (0, "1"),
        "only the container's own sleep"
    );

    // Stats: non-zero CPU and memory.
    let s = container_stats(&mut cri, &c).await.unwrap();
    assert!(s
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .is_some_and(|v| v.value > 0));
    assert!(s
        .memory
        .and_then(|m| m.working_set_bytes)
        .is_some_and(|v| v.value > 0));

    // UpdateContainerResources reaches the container's cgroup.
    update_resources(
        &mut cri,
        &c,
        LinuxContainerResources {
            memory_limit_in_bytes: 96 * 1024 * 1024,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let limit =
        fs::read_to_string(t.cgroup.as_ref().unwrap().join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), (96 * 1024 * 1024).to_string());

    // A process that ignores SIGTERM: 137 after the timeout.
    let stubborn = run_container(
        &mut cri,
        &p.id,
        &p.config,
        container_config(
            &env,
            "stubborn",
            "trap '' TERM; while true; do sleep 1; done",
        ),
    )
    .await
    .unwrap();
    let ts = traces(&mut cri, &stubborn).await;
    let t0 = std::time::Instant::now();
    stop_container(&mut cri, &stubborn, 1).await.unwrap();
    let st = wait_exited(&mut cri, &stubborn, 10).await.unwrap();
    assert_eq!(st.exit_code, 137);
    assert!(t0.elapsed() >= Duration::from_secs(1));
    remove_container(&mut cri, &stubborn).await.unwrap();
    ts.assert_gone().await;

    // StopPodSandbox with a running container, then RemovePodSandbox.
    stop_pod(&mut cri, &p.id).await.unwrap();
    let (st, _) = container_status(&mut cri, &c).await.unwrap();
    assert_eq!(st.state, ContainerState::ContainerExited as i32);
    remove_pod(&mut cri, &p.id).await.unwrap();
    t.assert_gone().await;
    p.husk.assert_gone().await.unwrap();
}

#[tokio::test]
async fn containers_share_the_pods_network_and_pid_namespace() {
    let Some(env) = test_env() else { return };
    let _g = SERIAL.lock().await;
    let mut cri = connect(&env.socket).await.unwrap();
    let p = pod(&env, &mut cri, "ctr-share").await;
    let web = run_container(
        &mut cri,
        &p.id,
        &p.config,
        container_config(
            &env,
            "web",
            "mkdir -p /tmp/www && echo hello-from-web > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        ),
    )
    .await
    .unwrap();
    let mut shared = container_config(&env, "client", "exec sleep 1000");
    shared
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = NamespaceMode::Pod as i32;
    let client = run_container(&mut cri, &p.id, &p.config, shared)
        .await
        .unwrap();
    let mut body = String::new();
    for _ in 0..50 {
        let (code, out, _) = exec_sync(
            &mut cri,
            &client,
            &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"],
            5,
        )
        .await
        .unwrap();
        if code == 0 {
            body = out;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        body.trim(),
        "hello-from-web",
        "localhost reaches the other container"
    );
    // Shared PID namespace: PID 1 is the pod's holder.
    let (_, out, _) = exec_sync(&mut cri, &client, &["cat", "/proc/1/cmdline"], 5)
        .await
        .unwrap();
    assert!(out.starts_with("husk-pause"), "PID 1 is {out:?}");
    // The pod's files are the container's.
    let (_, out, _) = exec_sync(&mut cri, &client, &["cat", "/etc/resolv.conf"], 5)
        .await
        .unwrap();
    assert!(out.contains("nameserver 10.96.0.10"), "{out}");
    let (_, out, _) = exec_sync(&mut cri, &client, &["hostname"], 5)
        .await
        .unwrap();
    assert_eq!(out.trim(), "ctr-share");
    let tw = traces(&mut cri, &web).await;
    let tc = traces(&mut cri, &client).await;
    remove_pod_checked(&mut cri, &p).await;
    tw.assert_gone().await;
    tc.assert_gone().await;
}

#[tokio::test]
async fn a_memory_limit_exceeded_is_oom_killed() {
    let Some(env) = test_env() else { return };
    let _g = SERIAL.lock().await;
    let mut cri = connect(&env.socket).await.unwrap();
    let p = pod(&env, &mut cri, "ctr-oom").await;
    let mut cfg = container_config(&env, "hog", "tail /dev/zero");
    cfg.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 16 * 1024 * 1024,
        ..Default::default()
    });
    let c = run_container(&mut cri, &p.id, &p.config, cfg)
        .await
        .unwrap();
    let st = wait_exited(&mut cri, &c, 30).await.unwrap();
    assert_eq!((st.exit_code, st.reason.as_str()), (137, "OOMKilled"));
    remove_pod_checked(&mut cri, &p).await;
}

#[tokio::test]
async fn ten_pods_with_two_containers_each_in_parallel() {
    let Some(env) = test_env() else { return };
    let _g = SERIAL.lock().await;
    let runs = (0..10).map(|i| {
        let env = env.clone();
        tokio::spawn(async move {
            let mut cri = connect(&env.socket).await.unwrap();
            let p = pod(&env, &mut cri, &format!("ctr-par{i}")).await;
            let mut ts = Vec::new();
            for n in ["a", "b"] {
                let c = run_container(
                    &mut cri,
                    &p.id,
                    &p.config,
                    container_config(&env, n, "exec sleep 1000"),
                )
                .await
                .unwrap();
                ts.push(traces(&mut cri, &c).await);
            }
            remove_pod_checked(&mut cri, &p).await;
            for t in ts {
                t.assert_gone().await;
            }
        })
    });
    for r in futures::future::join_all(runs).await {
        r.unwrap();
    }
}
