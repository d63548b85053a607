//! OOM detection against the real kernel (cgroup v1 here): a process
//! that exceeds its memory limit is reported once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use husk_sandbox::os::CgroupVersion;

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("\n*** SKIPPED: privileged OOM test needs root ***\n");
    false
}

#[tokio::test]
async fn an_oom_kill_is_reported_once() {
    if !root() {
        return;
    }
    let mem = Path::new("/sys/fs/cgroup/memory");
    if !mem.join("memory.oom_control").exists() {
        eprintln!("\n*** SKIPPED: privileged OOM test: no cgroup v1 memory hierarchy ***\n");
        return;
    }
    let dir = mem.join(format!("husk-oom-test-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("memory.limit_in_bytes"), "8M").unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let w = husk_task::oom::watch(CgroupVersion::V1, &dir, move || {
        let _ = tx.send(());
    })
    .unwrap();
    let procs = dir.join("cgroup.procs");
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}; exec python3 -c 'a = bytearray(200 * 1024 * 1024)'",
            procs.display()
        ))
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("TaskOOM within 5 s")
        .unwrap();
    assert!(!w.take_new(), "reported once");
    drop(w);
    std::fs::remove_dir(&dir).unwrap();
}
