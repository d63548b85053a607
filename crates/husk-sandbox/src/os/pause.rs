//! The pod holder's program: the shim binary re-executed as `husk-pause`.
//!
//! It holds the pod's namespaces open, reaps whatever is re-parented to it
//! (it is PID 1 of the pod's PID namespace), and exits 0 on SIGTERM or SIGINT.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// argv[0] the holder is executed with; the shim's `main` dispatches on it.
pub const PAUSE_ARGV0: &str = "husk-pause";

/// Runs the pause loop. Never returns.
pub fn pause_main() -> ! {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        set.add(s);
    }
    // Blocked signals are queued even for a namespace's init, so
    // sigwait sees a SIGTERM sent from the host.
    if nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_err() {
        std::process::exit(2);
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => std::process::exit(0),
            Ok(Signal::SIGCHLD) => reap(),
            _ => {}
        }
    }
}

fn reap() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
