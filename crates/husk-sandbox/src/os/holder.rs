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
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::pause::PAUSE_ARGV0;
use super::HolderSpec;
use crate::error::OsError;

const STEPS: [&str; 11] = [
    "unknown",
    "setns(net)",
    "joining the pod cgroup",
    "sethostname",
    "writing a sysctl",
    "redirecting stdio",
    "setsid",
    "exec of the pause program",
    "setting no_new_privs",
    "dropping capabilities",
    "installing the seccomp filter",
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

/// What the child needs between clone and exec, prepared by the parent:
/// raw fds and NUL-terminated buffers only.
struct ChildCtx {
    netns: Option<i32>,
    cgroup_join: Vec<i32>,
    hostname: Option<Vec<u8>>,
    sysctls: Vec<(CString, Vec<u8>)>,
    null: i32,
    err: i32,
    exe: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// The seccomp program (`confine`), when the holder runs husk-pause.
    filter: Option<libc::sock_fprog>,
}

/// `struct __user_cap_header_struct` and `__user_cap_data_struct` (v3).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Leaves the holder with no capability in any set and no way to gain
/// one, then installs its seccomp filter.
///
/// # Safety
/// Only for the cloned child, right before execve (see `child_main`).
unsafe fn confine(c: &ChildCtx) {
    // SAFETY: prctl and capset with integer arguments or pointers to
    // stack data that outlives the calls; the filter's program is owned
    // by the parent, whose memory this child has a copy of.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            child_fail(c.err, 8);
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) != 0
        {
            child_fail(c.err, 9);
        }
        // Every capability the kernel knows; EINVAL past the last one.
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
            {
                child_fail(c.err, 9);
            }
        }
        let header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let none = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &header as *const CapHeader, none.as_ptr()) != 0 {
            child_fail(c.err, 9);
        }
        if let Some(prog) = &c.filter {
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                prog as *const libc::sock_fprog,
                0,
                0,
            ) != 0
            {
                child_fail(c.err, 10);
            }
        }
    }
}

/// Reports (step, errno) to the parent and exits.
///
/// # Safety
/// Only for the cloned child: it calls `_exit`.
unsafe fn child_fail(err: i32, step: u8) -> ! {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let mut msg = [0u8; 5];
    msg[0] = step;
    msg[1..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: writes 5 bytes from a live stack buffer to an open fd, then
    // exits without running any of the parent's destructors.
    unsafe {
        libc::write(err, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// The child's side, from clone to exec.
///
/// # Safety
/// Only for a freshly cloned child of this process (no CLONE_VM). It makes
/// only raw, async-signal-safe syscalls on data the parent prepared and
/// keeps alive until clone returns; it never returns.
unsafe fn child_main(c: &ChildCtx, join_cgroup: bool) -> ! {
    // SAFETY: see the function's contract.
    unsafe {
        if let Some(fd) = c.netns {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                child_fail(c.err, 1);
            }
        }
        if join_cgroup {
            for &fd in &c.cgroup_join {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    child_fail(c.err, 2);
                }
            }
        }
        if let Some(h) = &c.hostname {
            if libc::sethostname(h.as_ptr().cast(), h.len()) != 0 {
                child_fail(c.err, 3);
            }
        }
        for (path, value) in &c.sysctls {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                child_fail(c.err, 4);
            }
            let n = libc::write(fd, value.as_ptr().cast(), value.len());
            libc::close(fd);
            if n < 0 || n as usize != value.len() {
                child_fail(c.err, 4);
            }
        }
        for target in 0..3 {
            if libc::dup2(c.null, target) < 0 {
                child_fail(c.err, 5);
            }
        }
        if libc::setsid() < 0 {
            child_fail(c.err, 6);
        }
        confine(c);
        libc::execve(c.exe, c.argv, c.envp);
        child_fail(c.err, 7)
    }
}

/// `struct clone_args` of clone3(2), up to the `cgroup` field.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3 with CLONE_INTO_CGROUP: the child starts life in the cgroup, so
/// no attach (and no wait on the threadgroup rwsem) happens. Fork-like: no
/// new stack, the child continues on its own copy of this one. Returns
/// `None` when the kernel lacks clone3 or CLONE_INTO_CGROUP.
fn clone_into_cgroup(
    ctx: &ChildCtx,
    flags: CloneFlags,
    cgroup_fd: i32,
) -> Result<Option<Pid>, OsError> {
    let args = CloneArgs {
        flags: u64::from(flags.bits() as u32) | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_fd as u64,
        ..Default::default()
    };
    // SAFETY: clone3 gets a valid, fully initialised clone_args of the size
    // passed. Without CLONE_VM or a stack, the child is a copy of this
    // process that returns 0 here and goes straight into `child_main`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        // SAFETY: this is the freshly cloned child.
        unsafe { child_main(ctx, false) }
    }
    if ret < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::E2BIG) | Some(libc::EINVAL) => Ok(None),
            _ => Err(OsError::sys("clone3", e)),
        };
    }
    let raw = i32::try_from(ret)
        .map_err(|_| OsError::sys("clone3", io::Error::other("pid out of range")))?;
    Ok(Some(Pid::from_raw(raw)))
}

/// Starts the holder and returns its host pid once it runs the pause
/// program. The clone itself is quick; the wait for the exec (or for the
/// step that failed) is asynchronous, so the server's thread never blocks.
pub async fn spawn(spec: &HolderSpec, exe: &Path) -> Result<u32, OsError> {
    let (pid, err_rd) = launch(spec, exe)?;
    confirm(pid, err_rd).await
}

/// Clones the holder; returns its pid and the read end of its status pipe.
fn launch(spec: &HolderSpec, exe: &Path) -> Result<(Pid, OwnedFd), OsError> {
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
    // The filter fits husk-pause's few syscalls; the shim binary as the
    // holder (no husk-pause installed) runs Rust's runtime and gets the
    // rest of the confinement only.
    let mut program = if exe.file_name() == Some(OsStr::new(PAUSE_ARGV0)) {
        super::confine::allow_only(&super::confine::pause_syscalls())
    } else {
        Vec::new()
    };
    let filter = (!program.is_empty()).then_some(libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    });

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

    let ctx = ChildCtx {
        netns: netns.as_ref().map(|f| f.as_raw_fd()),
        cgroup_join: cgroup_fds.iter().map(|f| f.as_raw_fd()).collect(),
        hostname,
        sysctls,
        null: devnull.as_raw_fd(),
        err: err_wr.as_raw_fd(),
        exe: exe_c.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        filter,
    };

    // cgroup v2: create the holder inside the pod cgroup (no attach at all).
    let mut pid = None;
    if let Some(dir) = &spec.clone_into {
        let cg = File::open(dir).map_err(|e| OsError::path("open cgroup", dir, e))?;
        pid = clone_into_cgroup(&ctx, flags, cg.as_raw_fd())?;
    }
    let pid = match pid {
        Some(pid) => pid,
        None => {
            let mut stack = vec![0u8; 64 * 1024];
            let child = Box::new(|| -> isize {
                // SAFETY: runs in the cloned child; see `child_main`.
                unsafe { child_main(&ctx, true) }
            });
            // SAFETY: the child does not share memory with the parent (no
            // CLONE_VM), runs only `child_main` on its own stack copy, and
            // ends in execve or _exit, never returning into the parent's frames.
            unsafe { nix::sched::clone(child, &mut stack, flags, Some(libc::SIGCHLD)) }
                .map_err(|e| OsError::sys("clone", e))?
        }
    };
    drop(err_wr);
    drop(netns);
    drop(cgroup_fds);
    Ok((pid, err_rd))
}

/// Waits for the holder's status pipe: EOF (closed by execve, CLOEXEC)
/// means the pause program runs; five bytes mean (step, errno) failed.
async fn confirm(pid: Pid, err_rd: OwnedFd) -> Result<u32, OsError> {
    let mut buf = [0u8; 5];
    let n = read_full(err_rd, &mut buf)
        .await
        .map_err(|e| OsError::sys("read holder status", e))?;
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

async fn read_full(fd: OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let mut n = 0;
    while n < buf.len() {
        rx.readable().await?;
        match rx.try_read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
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
