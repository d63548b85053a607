//! End-to-end failure paths through containerd: a containerd restart with
//! husk pods running, and a husk shim killed with SIGKILL. These disturb
//! the shared containerd, so they live in their own test binary (cargo
//! runs test binaries one after another) and run one at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use husk_e2e::*;
use k8s_cri::v1::PodSandboxState;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

async fn husk_pod(env: &Env, cri: &mut Cri, name: &str) -> (String, HuskPod) {
    let id = run_pod(cri, pod_config(env, name, &uid(name), false), "husk")
        .await
        .unwrap();
    let (st, info) = pod_status(cri, &id).await.unwrap();
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    (id.clone(), HuskPod::from_info(&id, &info).unwrap())
}

#[tokio::test]
async fn husk_pods_survive_a_containerd_restart() {
    let Some(env) = test_env() else { return };
    let _g = SERIAL.lock().await;
    let mut cri = connect(&env.socket).await.unwrap();
    let mut pods = Vec::new();
    for i in 0..5 {
        pods.push(husk_pod(&env, &mut cri, &format!("restart{i}")).await);
    }
    drop(cri);

    // Stop containerd by pid, then start it again.
    let pid = env.containerd_pid().unwrap();
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    eventually("containerd to stop", 20, || !alive(pid))
        .await
        .unwrap();
    for (id, pod) in &pods {
        assert!(alive(pod.holder), "pod {id} runs on without containerd");
        assert!(husk_shim_pid(id).is_some(), "its shim too");
    }
    start_containerd();
    assert_ne!(env.containerd_pid().unwrap(), pid);

    let mut cri = connect(&env.socket).await.unwrap();
    for (id, pod) in &pods {
        let (st, info) = pod_status(&mut cri, id).await.unwrap();
        assert_eq!(
            st.state,
            PodSandboxState::SandboxReady as i32,
            "pod {id} is READY after the restart"
        );
        assert_eq!(HuskPod::from_info(id, &info).unwrap().holder, pod.holder);
    }
    for (id, pod) in pods {
        stop_pod(&mut cri, &id).await.unwrap();
        remove_pod(&mut cri, &id).await.unwrap();
        pod.assert_gone().await.unwrap();
    }
}

#[tokio::test]
async fn a_killed_husk_shim_is_noticed_and_cleaned_up() {
    let Some(env) = test_env() else { return };
    let _g = SERIAL.lock().await;
    let mut cri = connect(&env.socket).await.unwrap();
    let (id, pod) = husk_pod(&env, &mut cri, "shimkill").await;
    let shim = husk_shim_pid(&id).unwrap();
    signal(shim, nix::sys::signal::Signal::SIGKILL);
    // containerd notices: it runs `delete` on the dead shim, which kills
    // the holder, and the pod is no longer reported ready.
    eventually("containerd to clean up the dead shim's holder", 15, || {
        !alive(pod.holder)
    })
    .await
    .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        match pod_status(&mut cri, &id).await {
            Ok((st, _)) if st.state == PodSandboxState::SandboxNotready as i32 => break,
            Ok(_) => {}
            Err(e) => eprintln!("status while containerd catches up: {e}"),
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "containerd never reported the pod not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_pod(&mut cri, &id).await.unwrap();
    remove_pod(&mut cri, &id).await.unwrap();
    pod.assert_gone().await.unwrap();
}

/// A husk pod with a log directory, and one container in it printing a
/// tick every 100 ms; returns (pod id, pod, container id, its pid, logs).
async fn pod_with_ticker(
    env: &Env,
    cri: &mut Cri,
    name: &str,
) -> (String, HuskPod, String, u32, tempfile::TempDir) {
    let logs = tempfile::tempdir().unwrap();
    let mut config = pod_config(env, name, &uid(name), false);
    config.log_directory = logs.path().display().to_string();
    let id = run_pod(cri, config.clone(), "husk").await.unwrap();
    let (_, info) = pod_status(cri, &id).await.unwrap();
    let pod = HuskPod::from_info(&id, &info).unwrap();
    let c = run_container(
        cri,
        &id,
        &config,
        container_config(env, "ticker", "while true; do echo tick; sleep 0.1; done"),
    )
    .await
    .unwrap();
    let (_, cinfo) = container_status(cri, &c).await.unwrap();
    let pid = cinfo["pid"].as_u64().unwrap() as u32;
    (id, pod, c, pid, logs)
}

fn ticks(logs: &tempfile::TempDir) -> usize {
    std::fs::read_to_string(logs.path().join("ticker.log"))
        .map(|s| s.lines().filter(|l| l.ends_with(" tick")).count())
        .unwrap_or(0)
}

#[tokio::test]
async fn containers_survive_a_containerd_restart() {
    let Some(env) = test_env() else { return };
    let _g = SERIAL.lock().await;
    let mut cri = connect(&env.socket).await.unwrap();
    let (id, pod, c, pid, logs) = pod_with_ticker(&env, &mut cri, "ctr-restart").await;
    eventually("the first ticks in the log", 10, || ticks(&logs) > 2)
        .await
        .unwrap();
    drop(cri);
    let cd = env.containerd_pid().unwrap();
    signal(cd, nix::sys::signal::Signal::SIGTERM);
    eventually("containerd to stop", 20, || !alive(cd))
        .await
        .unwrap();
    // Output while nobody reads the FIFO stays in it; the process runs on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(alive(pid), "the container runs on without containerd");
    start_containerd();
    let mut cri = connect(&env.socket).await.unwrap();
    let (st, _) = container_status(&mut cri, &c).await.unwrap();
    assert_eq!(
        st.state,
        k8s_cri::v1::ContainerState::ContainerRunning as i32
    );
    let (code, out, _) = exec_sync(&mut cri, &c, &["echo", "still-here"], 10)
        .await
        .unwrap();
    assert_eq!(
        (code, out.trim()),
        (0, "still-here"),
        "exec works after the restart"
    );
    let before = ticks(&logs);
    eventually("the log to resume", 10, || ticks(&logs) > before + 3)
        .await
        .unwrap();
    stop_pod(&mut cri, &id).await.unwrap();
    remove_pod(&mut cri, &id).await.unwrap();
    pod.assert_gone().await.unwrap();
    assert!(!alive(pid));
    assert!(mounts_mentioning(&c).is_empty());
}

#[tokio::test]
async fn a_killed_container_process_exits_137() {
    let Some(env) = test_env() else { return };
    let _g = SERIAL.lock().await;
    let mut cri = connect(&env.socket).await.unwrap();
    let (id, pod, c, pid, _logs) = pod_with_ticker(&env, &mut cri, "ctr-kill9").await;
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    let st = wait_exited(&mut cri, &c, 10).await.unwrap();
    assert_eq!(st.exit_code, 137);
    // The pod serves on: a new container runs in it.
    let (_, config) = (0, pod_config(&env, "ctr-kill9", &uid("ctr-kill9"), false));
    let c2 = run_container(
        &mut cri,
        &id,
        &config,
        container_config(&env, "again", "exit 0"),
    )
    .await
    .unwrap();
    assert_eq!(wait_exited(&mut cri, &c2, 10).await.unwrap().exit_code, 0);
    stop_pod(&mut cri, &id).await.unwrap();
    remove_pod(&mut cri, &id).await.unwrap();
    pod.assert_gone().await.unwrap();
}

#[tokio::test]
async fn a_killed_shim_with_containers_leaves_nothing() {
    let Some(env) = test_env() else { return };
    let _g = SERIAL.lock().await;
    let mut cri = connect(&env.socket).await.unwrap();
    let (id, pod, c, pid, _logs) = pod_with_ticker(&env, &mut cri, "ctr-shimkill").await;
    let shim = husk_shim_pid(&id).unwrap();
    signal(shim, nix::sys::signal::Signal::SIGKILL);
    // containerd runs `delete` for the pod and its container: both die.
    eventually("the container to be cleaned up", 15, || !alive(pid))
        .await
        .unwrap();
    eventually("the holder to be cleaned up", 15, || !alive(pod.holder))
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        if let Ok((st, _)) = container_status(&mut cri, &c).await {
            if st.state == k8s_cri::v1::ContainerState::ContainerExited as i32 {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "container never reported exited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_pod(&mut cri, &id).await.unwrap();
    remove_pod(&mut cri, &id).await.unwrap();
    pod.assert_gone().await.unwrap();
    assert!(
        mounts_mentioning(&c).is_empty(),
        "{:?}",
        mounts_mentioning(&c)
    );
    let runc_state = husk_shim::paths::runtime_root("k8s.io").join(&c);
    assert!(!runc_state.exists(), "runc state left");
}

/// Every husk shim server of containerd's k8s.io namespace.
fn husk_servers() -> std::collections::BTreeSet<u32> {
    husk_sandbox::inspect::processes_with_arg("k8s.io")
        .into_iter()
        .filter(|p| {
            let a = husk_sandbox::inspect::argv(*p);
            a.first()
                .is_some_and(|x| x.ends_with(b"containerd-shim-husk-v1"))
                && a.iter().any(|x| x == b"serve")
        })
        .collect()
}

/// husk's runtime state files (one per live container) in k8s.io.
fn runtime_states() -> std::collections::BTreeSet<String> {
    std::fs::read_dir(husk_shim::paths::runtime_root("k8s.io"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The network namespace files containerd's CRI has made.
fn netns_files(env: &Env) -> std::collections::BTreeSet<std::path::PathBuf> {
    std::fs::read_dir(env.state.join("state/io.containerd.grpc.v1.cri/netns"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The same containerd started again (`containerd-env.sh start`).
fn start_containerd() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/containerd-env.sh"
    );
    let ok = Command::new("bash")
        .arg(script)
        .arg("start")
        .status()
        .unwrap()
        .success();
    assert!(ok, "containerd came back");
}

/// SIGKILL to containerd, then the same containerd started again.
async fn kill_and_restart_containerd(env: &Env) -> Cri {
    let pid = env.containerd_pid().unwrap();
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    eventually("containerd to die", 20, || !alive(pid))
        .await
        .unwrap();
    start_containerd();
    connect(&env.socket).await.unwrap()
}

/// What kubelet does with a pod whose RunPodSandbox failed: every sandbox
/// of it containerd lists is stopped and removed (retrying while
/// containerd recovers), then the pod's cgroup parent. Returns the states
/// containerd reported.
async fn remove_pod_sandboxes(env: &Env, cri: &mut Cri, name: &str, uid: &str) -> Vec<String> {
    use k8s_cri::v1::{ListPodSandboxRequest, PodSandboxFilter};
    let list = cri
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                label_selector: [("app".to_string(), name.to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    let mut states = Vec::new();
    for sb in list {
        states.push(format!(
            "{:?}",
            PodSandboxState::try_from(sb.state).unwrap()
        ));
        let husk = match pod_status(cri, &sb.id).await {
            Ok((_, info)) => HuskPod::from_info(&sb.id, &info).ok(),
            Err(_) => None,
        };
        let t0 = std::time::Instant::now();
        loop {
            let r = match stop_pod(cri, &sb.id).await {
                Ok(()) => remove_pod(cri, &sb.id).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => break,
                Err(e) if t0.elapsed() < Duration::from_secs(20) => {
                    eprintln!("removing {} while containerd recovers: {e}", sb.id);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("pod {} cannot be removed: {e}", sb.id),
            }
        }
        if let Some(p) = husk {
            p.assert_gone().await.unwrap();
        }
    }
    remove_pod_cgroup(env, uid);
    let left = cgroup_dirs(env, &format!("pod{uid}"));
    assert!(left.is_empty(), "cgroups left: {left:?}");
    states
}

/// Fault: containerd killed (SIGKILL) while RunPodSandbox is in flight
/// on the husk handler, at delays across the call, then started again.
/// kubelet sees the call fail; afterwards containerd lists the pod's
/// sandbox (NOTREADY) or none, and removing what it lists leaves nothing:
/// no shim, holder, cgroup, mount, netns or bundle. A shim containerd
/// launched but never told of a sandbox exits on its own (idle exit).
#[tokio::test]
async fn containerd_killed_during_run_pod_sandbox() {
    let Some(env) = test_env() else { return };
    let _g = SERIAL.lock().await;
    let before = husk_servers();
    let mut cri = connect(&env.socket).await.unwrap();
    let mut outcomes = Vec::new();
    for (n, delay_ms) in [0u64, 10, 25, 50, 100].into_iter().enumerate() {
        let name = format!("cdkill-run{n}");
        let uid = uid(&name);
        let netns_before = netns_files(&env);
        let mut c2 = cri.clone();
        let config = pod_config(&env, &name, &uid, false);
        let call = tokio::spawn(async move { run_pod(&mut c2, config, "husk").await });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        cri = kill_and_restart_containerd(&env).await;
        let result = call.await.unwrap();
        let states = remove_pod_sandboxes(&env, &mut cri, &name, &uid).await;
        // containerd makes the pod's netns before it calls the shim; one
        // it made and lost in the crash is its own to leak. Counted,
        // checked unused, then removed so later tests start clean.
        let lost: Vec<_> = netns_files(&env)
            .difference(&netns_before)
            .cloned()
            .collect();
        for f in &lost {
            let _ = Command::new("umount").arg(f).status();
            let _ = std::fs::remove_file(f);
        }
        outcomes.push(format!(
            "{delay_ms} ms: RunPodSandbox {}, then listed {states:?}; netns containerd lost: {}",
            if result.is_ok() { "returned" } else { "failed" },
            lost.len()
        ));
    }
    eprintln!(
        "containerd killed during RunPodSandbox:\n  {}",
        outcomes.join("\n  ")
    );
    eventually("every shim of these pods to exit", 90, || {
        husk_servers().is_subset(&before)
    })
    .await
    .unwrap();
}

/// Fault: containerd killed while CreateContainer is in flight in a
/// running husk pod, then started again. The pod stays READY; the
/// container is listed (or not); removing what is listed, then the pod,
/// leaves no container process, cgroup, mount or runtime state.
#[tokio::test]
async fn containerd_killed_during_create_container() {
    let Some(env) = test_env() else { return };
    let _g = SERIAL.lock().await;
    let states_before = runtime_states();
    let mut cri = connect(&env.socket).await.unwrap();
    let mut outcomes = Vec::new();
    for (n, delay_ms) in [0u64, 10, 25, 50].into_iter().enumerate() {
        let name = format!("cdkill-ctr{n}");
        let uid = uid(&name);
        let config = pod_config(&env, &name, &uid, false);
        let pod_id = run_pod(&mut cri, config.clone(), "husk").await.unwrap();
        let mut c2 = cri.clone();
        let cfg = container_config(&env, "c", "sleep 1000");
        let pid2 = pod_id.clone();
        let call = tokio::spawn(async move {
            c2.create_container(k8s_cri::v1::CreateContainerRequest {
                pod_sandbox_id: pid2,
                config: Some(cfg),
                sandbox_config: Some(config),
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        cri = kill_and_restart_containerd(&env).await;
        let result = call.await.unwrap();
        let (st, _) = pod_status(&mut cri, &pod_id).await.unwrap();
        assert_eq!(
            st.state,
            PodSandboxState::SandboxReady as i32,
            "the pod runs on"
        );
        let listed = cri
            .list_containers(k8s_cri::v1::ListContainersRequest {
                filter: Some(k8s_cri::v1::ContainerFilter {
                    pod_sandbox_id: pod_id.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        let mut seen = Vec::new();
        for c in &listed {
            seen.push(format!(
                "{:?}",
                k8s_cri::v1::ContainerState::try_from(c.state).unwrap()
            ));
            let _ = stop_container(&mut cri, &c.id, 0).await;
            remove_container(&mut cri, &c.id).await.unwrap();
            assert!(
                mounts_mentioning(&c.id).is_empty(),
                "mounts of {} left",
                c.id
            );
        }
        outcomes.push(format!(
            "{delay_ms} ms: CreateContainer {}, then listed {seen:?}",
            if result.is_ok() { "returned" } else { "failed" }
        ));
        remove_pod_sandboxes(&env, &mut cri, &name, &uid).await;
    }
    eprintln!(
        "containerd killed during CreateContainer:\n  {}",
        outcomes.join("\n  ")
    );
    assert_eq!(
        runtime_states(),
        states_before,
        "no container's runtime state is left"
    );
}
