//! The helper process of husk's own runtime: the shim binary re-executed
//! with argv[0] `husk-init`, fresh and single-threaded. It joins the
//! container's cgroup, enters or makes its namespaces, and forks the
//! container's process, whose host pid it reports before it exits. The
//! process builds its root, drops to its user, capabilities and seccomp
//! filter, reports `ready`, and waits for the shim's start byte before it
//! execs the program (an exec process does not wait).
//!
//! Protocol on fd 3 (status, to the shim), lines: `pid <n>`, `ready`,
//! `error <message>`. EOF after `ready` (or after `pid` for an exec) means
//! the program is running: fd 3 is close-on-exec. Fd 4 (init only) is
//! the start pipe: one byte starts the program, EOF abandons it.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use serde::{Deserialize, Serialize};

use super::{process, rootfs, seccomp};

/// argv[0] that makes the shim binary run [`main`].
pub const INIT_ARGV0: &str = "husk-init";
pub const STATUS_FD: RawFd = 3;
pub const START_FD: RawFd = 4;

/// What the shim asks of the helper (argv[1], JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub bundle: PathBuf,
    /// Files written `0` into to join the container's cgroup.
    pub cgroup_join: Vec<PathBuf>,
    /// The container's cgroup directories, for its /sys/fs/cgroup.
    pub cgroup_dirs: Vec<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Set for an exec: the container's init and the process file.
    pub exec: Option<ExecPlan>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecPlan {
    pub init_pid: u32,
    pub process: PathBuf,
}

/// The helper's entry point; never returns.
pub fn main() -> ! {
    // SAFETY: the shim hands fd 3 to the helper for exactly this.
    let mut status = unsafe { File::from_raw_fd(STATUS_FD) };
    let plan = std::env::args()
        .nth(1)
        .ok_or_else(|| "no plan".to_string())
        .and_then(|p| serde_json::from_str::<Plan>(&p).map_err(|e| format!("plan: {e}")));
    let r = plan.and_then(|p| run(&p, &mut status));
    if let Err(msg) = r {
        let _ = report(&mut status, &format!("error {}", msg.replace('\n', " ")));
        std::process::exit(1);
    }
    std::process::exit(0)
}

/// Writes one status line in one write(2). The helper and the process it
/// forked share the pipe: `writeln!` with an argument writes piece by
/// piece, and a `ready` landing between `pid ` and the number made a
/// line neither side understood (a Create that never returned, about one
/// in 200 under CRI churn). A write of at most PIPE_BUF bytes is atomic.
fn report(status: &mut File, line: &str) -> std::io::Result<()> {
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let bytes = &buf.as_bytes()[..buf.len().min(libc::PIPE_BUF)];
    let n = nix::unistd::write(&*status, bytes)?;
    if n != bytes.len() {
        return Err(std::io::Error::other("short status write"));
    }
    Ok(())
}

fn load_spec(bundle: &Path) -> Result<Spec, String> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn ns_flag(t: LinuxNamespaceType) -> Result<CloneFlags, String> {
    Ok(match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        other => {
            return Err(format!(
                "{other:?} namespaces are not supported by husk's runtime"
            ))
        }
    })
}

fn ns_file(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Time => "time",
    }
}

fn join_cgroup(files: &[PathBuf]) -> Result<(), String> {
    for f in files {
        std::fs::write(f, "0").map_err(|e| format!("join cgroup {}: {e}", f.display()))?;
    }
    Ok(())
}

fn open(path: &Path) -> Result<File, String> {
    File::open(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn setns(f: &File, t: LinuxNamespaceType) -> Result<(), String> {
    nix::sched::setns(f, ns_flag(t)?).map_err(|e| format!("setns {}: {e}", ns_file(t)))
}

fn run(plan: &Plan, status: &mut File) -> Result<(), String> {
    let spec = load_spec(&plan.bundle)?;
    join_cgroup(&plan.cgroup_join)?;
    let console = match &plan.console_socket {
        Some(p) => Some(
            std::os::unix::net::UnixStream::connect(p)
                .map_err(|e| format!("console socket {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let process = match &plan.exec {
        Some(e) => {
            let text = std::fs::read(&e.process)
                .map_err(|err| format!("{}: {err}", e.process.display()))?;
            serde_json::from_slice::<Process>(&text).map_err(|err| format!("process: {err}"))?
        }
        None => spec.process().clone().ok_or("spec has no process")?,
    };
    process::validate(&process)?;
    match &plan.exec {
        None => {
            // Paths first (joined), then the new ones.
            let mut joins = Vec::new();
            let mut new = CloneFlags::empty();
            for n in &namespaces {
                let flag = ns_flag(n.typ())?;
                match n.path() {
                    Some(p) => joins.push((open(p)?, n.typ())),
                    None => new |= flag,
                }
            }
            for (f, t) in &joins {
                setns(f, *t)?;
            }
            nix::sched::unshare(new).map_err(|e| format!("unshare: {e}"))?;
        }
        Some(e) => {
            // The init's own namespaces, mount last: after it, /proc is
            // the container's.
            let mut joins = Vec::new();
            for n in &namespaces {
                let name = ns_file(n.typ());
                let theirs = format!("/proc/{}/ns/{name}", e.init_pid);
                let same = std::fs::metadata(&theirs).ok().map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    (m.dev(), m.ino())
                }) == std::fs::metadata(format!("/proc/self/ns/{name}"))
                    .ok()
                    .map(|m| {
                        use std::os::unix::fs::MetadataExt;
                        (m.dev(), m.ino())
                    });
                if !same {
                    joins.push((open(Path::new(&theirs))?, n.typ()));
                }
            }
            joins.sort_by_key(|(_, t)| *t == LinuxNamespaceType::Mount);
            for (f, t) in &joins {
                setns(f, *t)?;
            }
        }
    }
    // SAFETY: the helper is single-threaded (a fresh exec of the shim
    // binary that starts no threads), so the child may run anything.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Parent { child } => {
            report(status, &format!("pid {child}")).map_err(|e| format!("status: {e}"))?;
            Ok(())
        }
        nix::unistd::ForkResult::Child => {
            let r = container(plan, &spec, &process, console, status);
            if let Err(msg) = r {
                let _ = report(status, &format!("error {}", msg.replace('\n', " ")));
            }
            std::process::exit(127);
        }
    }
}

/// Sends the pty master over the console socket and makes the slave the
/// process's stdio and controlling terminal.
fn terminal(pts_dir: &Path, console: &std::os::unix::net::UnixStream) -> Result<OwnedFd, String> {
    use nix::fcntl::OFlag;
    let ptmx = pts_dir.join("ptmx");
    let master = nix::fcntl::open(
        &ptmx,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", ptmx.display()))?;
    let mut n: libc::c_uint = 0;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK and TIOCGPTN take pointers to ints we own.
    let ok = unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) == 0
            && libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) == 0
    };
    if !ok {
        return Err(format!("pty: {}", std::io::Error::last_os_error()));
    }
    let slave_path = pts_dir.join(n.to_string());
    let slave = nix::fcntl::open(
        &slave_path,
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open {}: {e}", slave_path.display()))?;
    let name = format!("/dev/pts/{n}");
    let iov = [std::io::IoSlice::new(name.as_bytes())];
    let fds = [master.as_raw_fd()];
    nix::sys::socket::sendmsg::<()>(
        console.as_raw_fd(),
        &iov,
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("send pty: {e}"))?;
    Ok(slave)
}

fn use_terminal(slave: &OwnedFd) -> Result<(), String> {
    for fd in 0..3 {
        // SAFETY: dup2 onto the stdio numbers.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(format!("dup2 pty: {}", std::io::Error::last_os_error()));
        }
    }
    // SAFETY: TIOCSCTTY on our stdin, a pty slave, as session leader.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(format!(
            "controlling tty: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The container's process, from fork to exec.
fn container(
    plan: &Plan,
    spec: &Spec,
    p: &Process,
    console: Option<std::os::unix::net::UnixStream>,
    status: &mut File,
) -> Result<(), String> {
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    let exec = plan.exec.is_some();
    let want_tty = p.terminal().unwrap_or(false);
    let mut slave = None;
    if !exec {
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| PathBuf::from("rootfs"));
        let rootfs = if root.is_absolute() {
            root
        } else {
            plan.bundle.join(root)
        };
        rootfs::prepare(spec, &rootfs, &plan.cgroup_dirs)?;
        if want_tty {
            let c = console
                .as_ref()
                .ok_or("terminal without a console socket")?;
            let s = terminal(&rootfs.join("dev/pts"), c)?;
            let console_at = rootfs.join("dev/console");
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&console_at);
            let fd_path = format!("/proc/self/fd/{}", s.as_raw_fd());
            nix::mount::mount(
                Some(fd_path.as_str()),
                &console_at,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("bind /dev/console: {e}"))?;
            slave = Some(s);
        }
        rootfs::pivot(&rootfs)?;
        rootfs::finish(spec)?;
        let has_uts = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::Uts));
        if let Some(h) = spec
            .hostname()
            .as_ref()
            .filter(|h| !h.is_empty() && has_uts)
        {
            nix::unistd::sethostname(h).map_err(|e| format!("sethostname: {e}"))?;
        }
        if let Some(adj) = p.oom_score_adj() {
            std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                .map_err(|e| format!("oom_score_adj: {e}"))?;
        }
    } else if want_tty {
        let c = console
            .as_ref()
            .ok_or("terminal without a console socket")?;
        slave = Some(terminal(Path::new("/dev/pts"), c)?);
    }
    if let Some(s) = &slave {
        use_terminal(s)?;
    }
    drop(slave);
    drop(console);
    process::set_rlimits(p)?;
    let cwd = p.cwd();
    let cwd_ok = nix::unistd::chdir(cwd.as_path()).is_ok();
    let program = process::lookup(p)?;
    let env = process::env(p)?;
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(seccomp::compile(s).map_err(|e| e.to_string())?),
        None => None,
    };
    let caps = process::CapSets::from_spec(p.capabilities().as_ref());
    let nnp = p.no_new_privileges().unwrap_or(false);
    process::become_user(p, &caps, nnp, filter.as_deref())?;
    if !cwd_ok {
        nix::unistd::chdir(cwd.as_path()).map_err(|e| format!("chdir {}: {e}", cwd.display()))?;
    }
    let umask = p.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask as _));
    nix::fcntl::fcntl(
        &*status,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| format!("status fd: {e}"))?;
    if !exec {
        report(status, "ready").map_err(|e| format!("status: {e}"))?;
        // SAFETY: fd 4 is the start pipe the shim handed over.
        let mut start = unsafe { File::from_raw_fd(START_FD) };
        let mut b = [0u8; 1];
        match start.read(&mut b) {
            Ok(1) => {}
            // The shim gave up on this container (or died): never run it.
            _ => std::process::exit(1),
        }
        drop(start);
    }
    Err(process::exec(&program, p, &env))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines written by several writers at once on one pipe arrive whole,
    /// as the helper's `pid` and its child's `ready` must.
    #[test]
    fn status_lines_from_two_writers_never_mix() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let mut f = File::from(w.try_clone().unwrap());
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        report(&mut f, &format!("pid {t}{i:05}")).unwrap();
                        report(&mut f, "ready").unwrap();
                    }
                })
            })
            .collect();
        drop(w);
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            File::from(r).read_to_string(&mut text).unwrap();
            text
        });
        for t in writers {
            t.join().unwrap();
        }
        let text = reader.join().unwrap();
        let mut lines = 0;
        for l in text.lines() {
            assert!(
                l == "ready" || (l.starts_with("pid ") && l[4..].parse::<u32>().is_ok()),
                "mixed line {l:?}"
            );
            lines += 1;
        }
        assert_eq!(lines, 4 * 2000 * 2);
    }
}
