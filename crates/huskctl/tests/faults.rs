//! Faults around a pod's containers, through huskctl and the real shim
//! (needs root): each test injects one fault, checks what a caller sees,
//! that the shim serves or exits cleanly, and that removal leaves nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::{alive, kill9, root, wait_until, Ctl};

fn server_of(pod: &str) -> u32 {
    husk_shim::server_proc::shim_server(pod).expect("the pod's shim server")
}

/// `kill -9` of the shim while a container's Create is in flight, at
/// delays across the call. The caller sees the call fail; `shim delete`
/// for the pod (what containerd 2.1 runs for a dead sandbox shim) then
/// removes the container with the pod: its processes, cgroup, mounts and
/// runtime state.
#[test]
fn kill_9_of_the_shim_mid_container_create() {
    if !root() {
        return;
    }
    let mut killed_mid_call = 0;
    // Every millisecond across the call (a few tens of ms in a debug
    // build), then past its end.
    let delays: Vec<u64> = (0..40).chain([48, 64, 96]).collect();
    let tries = delays.len();
    for (n, delay_ms) in delays.into_iter().enumerate() {
        let ctl = Ctl::new();
        let pod = format!("fk{}x{n}", std::process::id());
        let c = format!("{pod}-c");
        ctl.json(&["run", "--id", &pod]);
        let server = server_of(&pod);
        let mut call = ctl
            .command(&["run-container", &pod, "--id", &c, "--", "sleep", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        kill9(server);
        wait_until("the shim to die", || !alive(server));
        if !call.wait().unwrap().success() {
            killed_mid_call += 1;
        }
        ctl.shim_delete(&pod);
        ctl.assert_pod_gone(&pod, &[&c]);
    }
    eprintln!("container create: {killed_mid_call} of {tries} killed mid-call");
    assert!(killed_mid_call > 0, "no kill landed inside a create");
}

/// `kill -9` of the pod's holder while containers run. The sandbox stops
/// (Wait: 137, status NOTREADY), as a dead pause container does for
/// kubelet, which then stops the pod. A container in the pod's PID
/// namespace dies with the holder (the kernel ends a PID namespace with its
/// init); one with its own keeps running and serving execs until the pod
/// is stopped. Stop and Shutdown then leave nothing.
#[test]
fn kill_9_of_the_holder_while_containers_run() {
    if !root() {
        return;
    }
    let ctl = Ctl::new();
    let pod = format!("fh{}", std::process::id());
    let (own, shared) = (format!("{pod}-own"), format!("{pod}-shared"));
    let holder = ctl.json(&["run", "--id", &pod])["pid"].as_u64().unwrap() as u32;
    let own_pid = ctl.json(&["run-container", &pod, "--id", &own, "--", "sleep", "1000"])["pid"]
        .as_u64()
        .unwrap() as u32;
    let shared_pid = ctl.json(&[
        "run-container",
        &pod,
        "--id",
        &shared,
        "--share-pid",
        "--",
        "sleep",
        "1000",
    ])["pid"]
        .as_u64()
        .unwrap() as u32;
    kill9(holder);
    assert_eq!(ctl.json(&["wait", &pod])["exit_status"], 137);
    assert_eq!(
        ctl.json(&["status", &pod])["state"],
        "SANDBOX_NOTREADY",
        "the pod is not ready"
    );
    let w = ctl.json(&["wait-container", &pod, &shared]);
    assert_eq!(
        w["exit_status"], 137,
        "the shared-PID container died with it"
    );
    assert!(!alive(shared_pid));
    assert!(
        alive(own_pid),
        "a container with its own PID namespace runs on"
    );
    let out = ctl.run(&["exec", &pod, &own, "--", "cat", "/etc/hostname"]);
    assert!(out.status.success(), "and serves execs");
    ctl.json(&["stop", &pod, "--timeout", "1"]);
    assert!(!alive(own_pid), "StopSandbox stops every container");
    ctl.json(&["shutdown", &pod]);
    ctl.assert_pod_gone(&pod, &[&own, &shared]);
}

/// `kill -9` of a container's init while an exec runs in it. The exec is
/// in the container's PID namespace, which ends with its init: the exec
/// returns 137, the container's Wait 137, and removal leaves nothing.
#[test]
fn kill_9_of_a_containers_init_during_an_exec() {
    if !root() {
        return;
    }
    let ctl = Ctl::new();
    let pod = format!("fi{}", std::process::id());
    let c = format!("{pod}-c");
    ctl.json(&["run", "--id", &pod]);
    let init = ctl.json(&["run-container", &pod, "--id", &c, "--", "sleep", "1000"])["pid"]
        .as_u64()
        .unwrap() as u32;
    let mut exec = ctl
        .command(&["exec", &pod, &c, "--", "sleep", "4242"])
        .spawn()
        .unwrap();
    wait_until("the exec to run", || {
        husk_sandbox::inspect::processes_with_arg("4242")
            .iter()
            .any(|p| husk_sandbox::inspect::cmdline(*p).starts_with("sleep"))
    });
    kill9(init);
    let status = exec.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(137),
        "the exec was killed with its namespace"
    );
    assert_eq!(ctl.json(&["wait-container", &pod, &c])["exit_status"], 137);
    assert!(husk_sandbox::inspect::processes_with_arg("4242")
        .iter()
        .all(|p| !husk_sandbox::inspect::cmdline(*p).starts_with("sleep")));
    ctl.json(&["rm-container", &pod, &c]);
    assert!(
        ctl.run(&["ping", &pod]).status.success(),
        "the pod serves on"
    );
    ctl.json(&["shutdown", &pod]);
    ctl.assert_pod_gone(&pod, &[&c]);
}

/// The reader of a container's output FIFO goes away (containerd
/// restarting) while the container writes 10 MB. The container waits on a
/// full pipe, never sees EPIPE; the shim serves on (another container runs
/// to completion meanwhile); once a reader is back, every byte arrives.
#[test]
fn the_log_fifo_reader_goes_away_while_a_container_writes_10_mb() {
    if !root() {
        return;
    }
    let ctl = Ctl::new();
    let pod = format!("ff{}", std::process::id());
    let (c, other) = (format!("{pod}-c"), format!("{pod}-o"));
    ctl.json(&["run", "--id", &pod]);
    let fifo = ctl.run_root.path().join("out.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let open_reader = || {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap()
    };
    // 1..=1,400,000, one per line: 10.1 MB.
    const LAST: u32 = 1_400_000;
    let mut reader = open_reader();
    let fifo_arg = fifo.display().to_string();
    let pid = ctl.json(&[
        "run-container",
        &pod,
        "--id",
        &c,
        "--stdout",
        &fifo_arg,
        "--",
        "seq",
        "1",
        &LAST.to_string(),
    ])["pid"]
        .as_u64()
        .unwrap() as u32;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let read_some = |r: &mut std::fs::File, got: &mut Vec<u8>, buf: &mut [u8], until: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while got.len() < until {
            match r.read(buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "output stalled");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    };
    read_some(&mut reader, &mut got, &mut buf, 1 << 20);
    drop(reader); // the reader is gone
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(pid), "the writer waits on the full pipe");
    // The shim serves on: another container runs to completion.
    let done = ctl.json(&[
        "run-container",
        &pod,
        "--id",
        &other,
        "--wait",
        "--",
        "true",
    ]);
    assert_eq!(done["exit_status"], 0);
    ctl.json(&["rm-container", &pod, &other]);
    assert!(ctl.run(&["ping", &pod]).status.success());
    // The reader comes back: the rest arrives, and EOF once it exits.
    let mut reader = open_reader();
    let want: usize = (1..=LAST).map(|n| n.to_string().len() + 1).sum();
    read_some(&mut reader, &mut got, &mut buf, want);
    assert_eq!(got.len(), want, "every byte arrived");
    let text = String::from_utf8(got).unwrap();
    assert!(
        text.lines()
            .enumerate()
            .all(|(i, l)| l == (i + 1).to_string()),
        "in order, none lost"
    );
    assert_eq!(ctl.json(&["wait-container", &pod, &c])["exit_status"], 0);
    ctl.json(&["rm-container", &pod, &c]);
    ctl.json(&["shutdown", &pod]);
    ctl.assert_pod_gone(&pod, &[&c, &other]);
}

/// Writes `<run root>/runc-wrapper`, a shell script with `body`, and
/// names it the node's OCI runtime; returns its path. Replaced whole
/// (rename), so a runtime call never reads half of it.
fn runc_wrapper(ctl: &Ctl, body: &str) -> std::path::PathBuf {
    let wrapper = ctl.run_root.path().join("runc-wrapper");
    let tmp = wrapper.with_extension("tmp");
    std::fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &wrapper).unwrap();
    std::fs::write(
        ctl.run_root.path().join("runtime.toml"),
        format!("BinaryName = '{}'\n", wrapper.display()),
    )
    .unwrap();
    wrapper
}

/// The OCI runtime fails, then goes missing, while a container runs
/// (runc behind a wrapper the test breaks). Calls that need it fail with
/// its error; removing the container and the pod still leaves nothing.
#[test]
fn the_oci_runtime_fails_then_goes_missing_mid_life() {
    if !root() {
        return;
    }
    let ctl = Ctl::new();
    let wrapper = runc_wrapper(&ctl, "exec runc \"$@\"");
    let pod = format!("fr{}", std::process::id());
    let (c, d) = (format!("{pod}-c"), format!("{pod}-d"));
    ctl.json(&["run", "--id", &pod]);
    let pid = ctl.json(&["run-container", &pod, "--id", &c, "--", "sleep", "1000"])["pid"]
        .as_u64()
        .unwrap() as u32;
    runc_wrapper(&ctl, "echo 'runtime broken by the test' >&2; exit 1");
    let out = ctl.run(&["exec", &pod, &c, "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // runc's own errors are read from its --log file; a runtime that
    // dies without logging is named with its exit status.
    assert!(
        err.contains(&*wrapper.to_string_lossy()) && err.contains("exit status: 1"),
        "the error names the runtime: {err}"
    );
    let out = ctl.run(&["run-container", &pod, "--id", &d, "--", "true"]);
    assert!(!out.status.success(), "a new container fails");
    assert!(
        ctl.run(&["ping", &pod]).status.success(),
        "the pod serves on"
    );
    std::fs::remove_file(&wrapper).unwrap();
    let rm = ctl.run(&["rm-container", &pod, &c]);
    eprintln!(
        "rm-container with the runtime missing: {} {}",
        rm.status,
        String::from_utf8_lossy(&rm.stderr).trim()
    );
    ctl.json(&["shutdown", &pod]);
    wait_until("the container to die", || !alive(pid));
    ctl.assert_pod_gone(&pod, &[&c, &d]);
}

/// husk's own runtime is the shim's running image: an upgrade that
/// replaces or removes the binary on disk does not stop a running shim
/// from creating and exec'ing containers.
#[test]
fn the_shim_binary_removed_mid_life_still_runs_containers() {
    if !root() {
        return;
    }
    let ctl = Ctl::new();
    let copy = ctl.run_root.path().join("containerd-shim-husk-v1");
    let shim = std::path::Path::new(common::HUSKCTL).with_file_name("containerd-shim-husk-v1");
    std::fs::copy(&shim, &copy).unwrap();
    let copy_arg = copy.display().to_string();
    let pod = format!("fs{}", std::process::id());
    let (a, b) = (format!("{pod}-a"), format!("{pod}-b"));
    let json = |args: &[&str]| {
        let mut all = vec!["--shim", &copy_arg];
        all.extend_from_slice(args);
        ctl.json(&all)
    };
    json(&["run", "--id", &pod]);
    json(&["run-container", &pod, "--id", &a, "--", "sleep", "1000"]);
    std::fs::remove_file(&copy).unwrap();
    let done = ctl.json(&["run-container", &pod, "--id", &b, "--wait", "--", "true"]);
    assert_eq!(done["exit_status"], 0, "a new container runs");
    let out = ctl.run(&["exec", &pod, &a, "--", "true"]);
    assert!(out.status.success(), "an exec runs");
    ctl.json(&["rm-container", &pod, &b]);
    ctl.json(&["rm-container", &pod, &a]);
    ctl.json(&["shutdown", &pod]);
    ctl.assert_pod_gone(&pod, &[&a, &b]);
}

/// The shim dies (`kill -9`) with a runc container running, and runc is
/// gone too by the time containerd runs `shim delete`: delete does what
/// `runc delete --force` would, from the container's record (its cgroup,
/// written at create), and nothing is left.
#[test]
fn a_dead_shims_runc_container_is_reclaimed_without_runc() {
    if !root() {
        return;
    }
    let ctl = Ctl::new();
    let wrapper = runc_wrapper(&ctl, "exec runc \"$@\"");
    let pod = format!("fd{}", std::process::id());
    let c = format!("{pod}-c");
    ctl.json(&["run", "--id", &pod]);
    let pid = ctl.json(&["run-container", &pod, "--id", &c, "--", "sleep", "1000"])["pid"]
        .as_u64()
        .unwrap() as u32;
    let server = server_of(&pod);
    kill9(server);
    wait_until("the shim to die", || !alive(server));
    std::fs::remove_file(&wrapper).unwrap();
    ctl.shim_delete(&pod);
    wait_until("the container to die", || !alive(pid));
    ctl.assert_pod_gone(&pod, &[&c]);
}
