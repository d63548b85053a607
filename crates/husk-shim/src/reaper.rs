//! Reaps orphans. The shim is a child subreaper, so besides the processes
//! it starts and watches (the holder, containers' inits and execs, runc),
//! orphans can be reparented to it: the grandchildren of a container that
//! shares the host's PID namespace, say. Those would stay zombies until
//! the shim exits. Every child the shim watches is reaped within
//! milliseconds of exiting (pidfd watchers, tokio's process driver), so a
//! zombie child still unclaimed two sweeps apart is an orphan nobody waits
//! for: this reaps exactly those.

use std::collections::HashSet;
use std::time::Duration;

const SWEEP: Duration = Duration::from_secs(1);

/// The zombie children of this process, from /proc.
fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    let mut kids = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{me}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                kids.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    kids.retain(|p| is_zombie(*p));
    kids
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// One sweep: reaps the zombies that were already zombies in `seen`;
/// returns this sweep's zombies and how many were reaped.
pub fn sweep(seen: &HashSet<u32>) -> (HashSet<u32>, usize) {
    let now: HashSet<u32> = zombie_children().into_iter().collect();
    let mut reaped = 0;
    for pid in now.intersection(seen) {
        let Ok(raw) = i32::try_from(*pid) else {
            continue;
        };
        let p = nix::unistd::Pid::from_raw(raw);
        if nix::sys::wait::waitpid(p, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).is_ok() {
            tracing::debug!(pid, "reaped an orphan");
            reaped += 1;
        }
    }
    (now, reaped)
}

/// Runs for the server's life.
pub async fn run() {
    let mut seen = HashSet::new();
    loop {
        tokio::time::sleep(SWEEP).await;
        seen = sweep(&seen).0;
    }
}
