//! What the huskctl test binaries share: root check, a huskctl with its
//! own run root, and the checks that a pod left nothing behind.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const HUSKCTL: &str = env!("CARGO_BIN_EXE_huskctl");
pub const NS: &str = "clitest";

pub fn root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    eprintln!("\n*** SKIPPED: huskctl CLI test needs root ***\n");
    false
}

pub struct Ctl {
    pub run_root: tempfile::TempDir,
}

impl Ctl {
    pub fn new() -> Ctl {
        Ctl {
            run_root: tempfile::tempdir().unwrap(),
        }
    }

    /// huskctl with this run root and namespace, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(HUSKCTL);
        c.env("HUSK_RUN_ROOT", self.run_root.path())
            .env("HUSK_CONFIG", self.run_root.path().join("runtime.toml"))
            .args(["--namespace", NS])
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        assert!(
            out.status.success(),
            "huskctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The pod's bundle, where huskctl makes it.
    pub fn bundle(&self, pod: &str) -> PathBuf {
        self.run_root.path().join("bundles").join(NS).join(pod)
    }

    /// What containerd runs when a shim died: `shim delete` for the pod.
    pub fn shim_delete(&self, pod: &str) -> Output {
        let shim = Path::new(HUSKCTL).with_file_name("containerd-shim-husk-v1");
        let out = Command::new(shim)
            .env("HUSK_RUN_ROOT", self.run_root.path())
            .args(["-namespace", NS, "-id", pod, "-bundle"])
            .arg(self.bundle(pod))
            .arg("delete")
            .current_dir(self.bundle(pod))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shim delete: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Nothing of the pod or of the named containers is left: no process
    /// in their cgroups, no cgroup directory, no mount, no sandbox state,
    /// no runtime state, no shim server.
    pub fn assert_pod_gone(&self, pod: &str, containers: &[&str]) {
        let names: Vec<&str> = std::iter::once(pod)
            .chain(containers.iter().copied())
            .collect();
        wait_until("the shim server to exit", || {
            husk_shim::server_proc::shim_server(pod).is_none()
        });
        for name in &names {
            let dirs = cgroup_dirs_named(name);
            assert!(dirs.is_empty(), "cgroups left: {dirs:?}");
        }
        let mounts: Vec<String> = names
            .iter()
            .flat_map(|n| husk_sandbox::inspect::mounts_mentioning(n))
            .collect();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        let state = self.run_root.path().join("state").join(NS).join(pod);
        assert!(!state.exists(), "sandbox state left: {}", state.display());
        let runtime = self.run_root.path().join("runc").join(NS);
        let left: Vec<_> = std::fs::read_dir(&runtime)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "runtime state left: {left:?}");
    }
}

impl Drop for Ctl {
    /// Best effort for a test that failed half-way: every pod with state
    /// in this run root gets what containerd would run for a dead shim.
    fn drop(&mut self) {
        let state = self.run_root.path().join("state").join(NS);
        let Ok(pods) = std::fs::read_dir(&state) else {
            return;
        };
        for p in pods.flatten() {
            let pod = p.file_name().to_string_lossy().into_owned();
            if let Some(server) = husk_shim::server_proc::shim_server(&pod) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(server as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let shim = Path::new(HUSKCTL).with_file_name("containerd-shim-husk-v1");
            let _ = Command::new(shim)
                .env("HUSK_RUN_ROOT", self.run_root.path())
                .args(["-namespace", NS, "-id", &pod, "-bundle"])
                .arg(self.bundle(&pod))
                .arg("delete")
                .output();
        }
    }
}

/// Every cgroup directory named `name` under /husk, in every hierarchy.
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let Ok(rd) = std::fs::read_dir(base) else {
            continue;
        };
        for h in rd.flatten() {
            let d = h.path().join("husk").join(name);
            if d.exists() {
                v.push(d);
            }
        }
    }
    v
}

pub fn alive(pid: u32) -> bool {
    husk_sandbox::inspect::alive(pid)
}

pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

pub fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}
