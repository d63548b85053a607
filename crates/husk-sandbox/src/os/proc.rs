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

fn pidfd_open(pid: u32) -> Result<OwnedFd, OsError> {
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

/// Resolves once the pidfd is readable, which the kernel signals when the
/// process exits.
async fn exited(fd: OwnedFd) {
    // SAFETY: `fd` is an owned, open pidfd that the AsyncFd owns from here
    // on, so it stays open and unchanged for the AsyncFd's whole life.
    match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
        Ok(afd) => {
            let _ = afd.readable().await;
        }
        Err(_) => {
            // No reactor for this fd: fall back to polling /proc.
            std::future::pending::<()>().await
        }
    }
}

/// Reads `/proc/<pid>/stat` fields after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

impl Processes for LinuxProcesses {
    fn spawn_holder(&self, spec: &HolderSpec) -> Result<(u32, BoxFuture<'static, u32>), OsError> {
        let pid = holder::spawn(spec, &self.exe)?;
        let fd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = self.signal(pid, libc::SIGKILL);
                holder::reap(pid);
                return Err(e);
            }
        };
        let exit = async move {
            exited(fd).await;
            // The process has exited, so this waitpid does not block.
            holder::reap(pid)
        };
        Ok((pid, exit.boxed()))
    }

    fn watch_foreign(&self, pid: u32) -> Result<BoxFuture<'static, ()>, OsError> {
        let fd = pidfd_open(pid)?;
        Ok(exited(fd).boxed())
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
