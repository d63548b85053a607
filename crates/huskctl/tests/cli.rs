//! huskctl as a user runs it (needs root: it makes real sandboxes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use serde_json::Value;

const HUSKCTL: &str = env!("CARGO_BIN_EXE_huskctl");

fn root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    eprintln!("\n*** SKIPPED: huskctl CLI test needs root ***\n");
    false
}

struct Ctl {
    run_root: tempfile::TempDir,
}

impl Ctl {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(HUSKCTL)
            .env("HUSK_RUN_ROOT", self.run_root.path())
            .args(["--namespace", "clitest"])
            .args(args)
            .output()
            .unwrap()
    }
    fn json(&self, args: &[&str]) -> Value {
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
}

#[test]
fn a_sandbox_through_huskctl() {
    if !root() {
        return;
    }
    let ctl = Ctl {
        run_root: tempfile::tempdir().unwrap(),
    };
    let id = format!("cli{}", std::process::id());
    let run = ctl.json(&[
        "run",
        "--id",
        &id,
        "--hostname",
        "cli-host",
        "--cgroup-parent",
        &format!("/husk-cli-{id}"),
    ]);
    let pid = run["pid"].as_u64().unwrap();
    assert!(pid > 0);
    let st = ctl.json(&["status", &id, "--verbose"]);
    assert_eq!(st["state"], "SANDBOX_READY");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["info"]["hostname"], "cli-host");
    let ls = ctl.json(&["ls"]);
    assert!(ls
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == id.as_str() && r["phase"] == "running"));
    assert_eq!(ctl.json(&["ping", &id])["alive"], true);
    assert_eq!(ctl.json(&["platform", &id])["os"], "linux");
    assert!(
        ctl.json(&["metrics", &id])["pids_current"]
            .as_u64()
            .unwrap()
            >= 1
    );
    ctl.json(&["stop", &id, "--timeout", "2"]);
    assert_eq!(ctl.json(&["wait", &id])["exit_status"], 0);
    ctl.json(&["shutdown", &id]);
    assert!(ctl.json(&["ls"]).as_array().unwrap().is_empty());
    // Human output is a table with a header.
    let out = ctl.run(&["ls"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ID"));
    for h in ["cpu", "memory", "pids"] {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{h}/husk-cli-{id}"));
    }
}

#[test]
fn errors_are_clear() {
    if !root() {
        return;
    }
    let ctl = Ctl {
        run_root: tempfile::tempdir().unwrap(),
    };
    let out = ctl.run(&["status", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope") && err.starts_with("huskctl: "),
        "{err}"
    );
    let out = ctl.run(&["run", "--id", "bad/id"]);
    assert!(!out.status.success());
    let out = ctl.run(&["run", "--id", "badsysctl", "--sysctl", "vm.swappiness=1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("vm.swappiness"),
        "{err}"
    );
    assert!(
        ctl.json(&["ls"]).as_array().unwrap().is_empty(),
        "the failed create left nothing"
    );
}
