//! The real `Processes`: clone the holder, signal, watch exits by pidfd.

use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use futures::future::BoxFuture;
use futures::FutureExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::{holder, HolderSpec, Processes};
use crate::error::OsError;

pub struct LinuxProcesses {
    /// The program the holder executes (the shim binary itself).
    exe: PathBuf,
}

impl LinuxProcesses {
    pub fn new(exe: PathBuf) -> Self {
        LinuxProcesses { exe }
    }
}

pub fn pidfd_open(pid: u32) -> Result<OwnedFd, OsError> {
    let raw = libc::pid_t::try_from(pid)
        .map_err(|_| OsError::sys("pidfd_open", io::Error::from_raw_os_error(libc::ESRCH)))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    if fd < 0 {
        return Err(OsError::sys("pidfd_open", io::Error::last_os_error()));
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// How often the /proc fallback looks at a process.
const POLL_PROC: std::time::Duration = std::time::Duration::from_millis(50);

/// Resolves once the pidfd is readable, which the kernel signals when the
/// process exits. If the reactor cannot take the pidfd, it polls /proc
/// instead; the pidfd still pins the pid, so it cannot be reused meanwhile.
pub async fn exited(fd: OwnedFd, pid: u32) {
    // SAFETY: `fd` is an owned, open pidfd that the AsyncFd owns from here
    // on, so it stays open and unchanged for the AsyncFd's whole life.
    match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
        Ok(afd) => {
            let _ = afd.readable().await;
        }
        Err(e) => {
            tracing::warn!(pid, error = %e, "pidfd not pollable; polling /proc");
            while !gone_or_zombie(pid) {
                tokio::time::sleep(POLL_PROC).await;
            }
        }
    }
}

/// True once `pid` has exited: its /proc entry is gone, or it is a zombie
/// waiting to be reaped.
pub fn gone_or_zombie(pid: u32) -> bool {
    match stat_fields(pid) {
        None => true,
        Some(f) => f.first().is_some_and(|s| s == "Z" || s == "X"),
    }
}

/// Reads `/proc/<pid>/stat` fields after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

#[async_trait::async_trait]
impl Processes for LinuxProcesses {
    async fn spawn_holder(
        &self,
        spec: &HolderSpec,
    ) -> Result<(u32, BoxFuture<'static, u32>), OsError> {
        let pid = holder::spawn(spec, &self.exe).await?;
        let fd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = self.signal(pid, libc::SIGKILL);
                holder::reap(pid);
                return Err(e);
            }
        };
        let exit = async move {
            exited(fd, pid).await;
            // The process has exited, so this waitpid does not block.
            holder::reap(pid)
        };
        Ok((pid, exit.boxed()))
    }

    fn watch_child(&self, pid: u32) -> Result<BoxFuture<'static, u32>, OsError> {
        let fd = pidfd_open(pid)?;
        Ok(async move {
            exited(fd, pid).await;
            holder::reap(pid)
        }
        .boxed())
    }

    fn watch_foreign(&self, pid: u32) -> Result<BoxFuture<'static, ()>, OsError> {
        let fd = pidfd_open(pid)?;
        Ok(exited(fd, pid).boxed())
    }

    fn signal(&self, pid: u32, signal: i32) -> Result<(), OsError> {
        let raw = i32::try_from(pid)
            .map_err(|_| OsError::sys("kill", io::Error::from_raw_os_error(libc::ESRCH)))?;
        let sig = Signal::try_from(signal).map_err(|e| OsError::sys("signal number", e))?;
        match kill(Pid::from_raw(raw), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(OsError::sys("kill", e)),
        }
    }

    fn start_time(&self, pid: u32) -> Option<u64> {
        stat_fields(pid)?.get(19)?.parse().ok()
    }

    fn state(&self, pid: u32) -> Option<char> {
        stat_fields(pid)?.first()?.chars().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_not_gone() {
        assert!(!gone_or_zombie(std::process::id()));
    }

    #[test]
    fn a_reaped_child_is_gone() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(gone_or_zombie(pid));
    }

    #[test]
    fn an_unreaped_child_is_a_zombie() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !gone_or_zombie(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(gone_or_zombie(pid), "child never became a zombie");
        child.wait().expect("wait");
    }
}
