//! Starting the pod holder: clone(2) straight into the pod's new
//! namespaces, then, in the child, join the netns, the pod cgroup, set the
//! hostname and sysctls, and exec the pause program.
//!
//! Between clone and exec the child runs only raw, async-signal-safe
//! syscalls on data prepared by the parent, since the parent is
//! multi-threaded. A CLOEXEC pipe carries a failure (step, errno) back; EOF
//! on it means the exec happened.

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::pause::PAUSE_ARGV0;
use super::HolderSpec;
use crate::error::OsError;

const STEPS: [&str; 8] = [
    "unknown",
    "setns(net)",
    "joining the pod cgroup",
    "sethostname",
    "writing a sysctl",
    "redirecting stdio",
    "setsid",
    "exec of the pause program",
];

fn cstring(b: &[u8], what: &'static str) -> Result<CString, OsError> {
    CString::new(b).map_err(|e| OsError::sys(what, io::Error::new(io::ErrorKind::InvalidInput, e)))
}

/// /proc/sys path of a sysctl given as `a.b.c` or `a/b/c`.
pub fn sysctl_path(name: &str) -> String {
    if name.contains('/') {
        format!("/proc/sys/{name}")
    } else {
        format!("/proc/sys/{}", name.replace('.', "/"))
    }
}

/// Starts the holder and returns its host pid.
pub fn spawn(spec: &HolderSpec, exe: &Path) -> Result<u32, OsError> {
    let netns: Option<OwnedFd> = match &spec.join_netns {
        Some(p) => Some(
            File::open(p)
                .map_err(|e| OsError::path("open netns", p, e))?
                .into(),
        ),
        None => None,
    };
    let mut cgroup_fds: Vec<OwnedFd> = Vec::with_capacity(spec.cgroup_join.len());
    for f in &spec.cgroup_join {
        let file = OpenOptions::new()
            .write(true)
            .open(f)
            .map_err(|e| OsError::path("open", f, e))?;
        cgroup_fds.push(file.into());
    }
    let devnull: OwnedFd = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| OsError::path("open", "/dev/null", e))?
        .into();
    let hostname = match (&spec.hostname, spec.new_uts) {
        (Some(h), true) if !h.is_empty() => Some(h.as_bytes().to_vec()),
        _ => None,
    };
    let mut sysctls = Vec::with_capacity(spec.sysctls.len());
    for (name, value) in &spec.sysctls {
        sysctls.push((
            cstring(sysctl_path(name).as_bytes(), "sysctl path")?,
            value.as_bytes().to_vec(),
        ));
    }
    let exe_c = cstring(exe.as_os_str().as_bytes(), "exe path")?;
    let argv0 = cstring(OsStr::new(PAUSE_ARGV0).as_bytes(), "argv0")?;
    let argv: [*const libc::c_char; 2] = [argv0.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];

    let (err_rd, err_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| OsError::sys("pipe2", e))?;

    let mut flags = CloneFlags::empty();
    if spec.new_pid {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    if spec.new_ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if spec.new_uts {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    if spec.new_net {
        flags |= CloneFlags::CLONE_NEWNET;
    }

    let netns_raw = netns.as_ref().map(|f| f.as_raw_fd());
    let cg_raw: Vec<i32> = cgroup_fds.iter().map(|f| f.as_raw_fd()).collect();
    let null_raw = devnull.as_raw_fd();
    let wr_raw = err_wr.as_raw_fd();
    let exe_ptr = exe_c.as_ptr();
    let argv_ptr = argv.as_ptr();
    let envp_ptr = envp.as_ptr();

    let child = Box::new(move || -> isize {
        let fail = |step: u8| -> isize {
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            let mut msg = [0u8; 5];
            msg[0] = step;
            msg[1..].copy_from_slice(&errno.to_ne_bytes());
            // SAFETY: writes 5 bytes from a live stack buffer to an open fd,
            // then exits without running any of the parent's destructors.
            unsafe {
                libc::write(wr_raw, msg.as_ptr().cast(), msg.len());
                libc::_exit(127)
            }
        };
        // SAFETY: every call below is a raw, async-signal-safe syscall on
        // fds and NUL-terminated buffers the parent prepared and keeps
        // alive until clone returns; the child has its own copy of them.
        unsafe {
            if let Some(fd) = netns_raw {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return fail(1);
                }
            }
            for &fd in &cg_raw {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return fail(2);
                }
            }
            if let Some(h) = &hostname {
                if libc::sethostname(h.as_ptr().cast(), h.len()) != 0 {
                    return fail(3);
                }
            }
            for (path, value) in &sysctls {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return fail(4);
                }
                let n = libc::write(fd, value.as_ptr().cast(), value.len());
                libc::close(fd);
                if n < 0 || n as usize != value.len() {
                    return fail(4);
                }
            }
            for target in 0..3 {
                if libc::dup2(null_raw, target) < 0 {
                    return fail(5);
                }
            }
            if libc::setsid() < 0 {
                return fail(6);
            }
            libc::execve(exe_ptr, argv_ptr, envp_ptr);
        }
        fail(7)
    });

    let mut stack = vec![0u8; 64 * 1024];
    // SAFETY: the child does not share memory with the parent (no
    // CLONE_VM), runs only the closure above on its own stack copy, and
    // ends in execve or _exit, never returning into the parent's frames.
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(|e| OsError::sys("clone", e))?;
    drop(err_wr);
    drop(netns);
    drop(cgroup_fds);

    let mut buf = [0u8; 5];
    let mut rd = File::from(err_rd);
    let n = read_full(&mut rd, &mut buf).map_err(|e| OsError::sys("read holder status", e))?;
    if n == 0 {
        return u32::try_from(pid.as_raw())
            .map_err(|_| OsError::sys("clone", io::Error::other("negative pid")));
    }
    let _ = waitpid(pid, None);
    let step = STEPS.get(buf[0] as usize).copied().unwrap_or(STEPS[0]);
    let mut errno = [0u8; 4];
    errno.copy_from_slice(&buf[1..5]);
    Err(OsError::HolderSetup {
        step,
        source: io::Error::from_raw_os_error(i32::from_ne_bytes(errno)),
    })
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Waits for a child pid without blocking the runtime thread for long
/// (used only after the pidfd said it exited). Returns the wait status as
/// containerd reports it: the exit code, or 128+signal.
pub fn reap(pid: u32) -> u32 {
    use nix::sys::wait::WaitStatus;
    let Ok(raw) = i32::try_from(pid) else {
        return 255;
    };
    loop {
        match waitpid(Pid::from_raw(raw), None) {
            Ok(WaitStatus::Exited(_, code)) => return code as u32,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as u32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}
