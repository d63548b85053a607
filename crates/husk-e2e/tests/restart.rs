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
