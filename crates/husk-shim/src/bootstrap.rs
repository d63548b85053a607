//! The shim v2 command line, as containerd runs it:
//! `containerd-shim-husk-v1 -namespace NS -address A -publish-binary B -id ID [-debug] start|delete`.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::bootstrap_api::BootstrapParams;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use husk_sandbox::engine::Host;
use husk_sandbox::state::{now_nanos, to_time};
use husk_sandbox::StateStore;

use crate::convert;
use crate::paths;

/// The file in the bundle holding the server's pid.
pub const SHIM_PID_FILE: &str = "shim.pid";

/// The env var naming the listening socket's fd in the server process.
pub const LISTEN_FD_ENV: &str = "HUSK_LISTEN_FD";
const LISTEN_FD: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("runtime options on stdin: {0}")]
    Options(String),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Engine(#[from] husk_sandbox::Error),
    #[error(transparent)]
    Os(#[from] husk_sandbox::OsError),
    #[error(transparent)]
    Task(#[from] husk_task::Error),
}

fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> BootstrapError {
    let path = path.into();
    move |source| BootstrapError::Io { op, path, source }
}

/// Parsed command line (Go `flag` syntax: `-name value`, `-name=value`,
/// `--name value`; the first non-flag word is the action).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub namespace: String,
    pub address: String,
    pub publish_binary: String,
    pub id: String,
    pub bundle: Option<PathBuf>,
    pub socket: Option<String>,
    pub debug: bool,
    pub version: bool,
    /// `-info`: print a RuntimeInfo (containerd's runtime introspection).
    pub info: bool,
    pub action: Option<String>,
}

pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Flags, BootstrapError> {
    let mut f = Flags::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with('-') || arg == "-" {
            f.action = Some(arg);
            break; // Go's flag package stops at the first non-flag
        }
        let body = arg.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let mut value = |name: &str| -> Result<String, BootstrapError> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .ok_or_else(|| BootstrapError::Usage(format!("flag -{name} needs a value"))),
            }
        };
        match name {
            "namespace" => f.namespace = value(name)?,
            "address" => f.address = value(name)?,
            "publish-binary" => f.publish_binary = value(name)?,
            "id" => f.id = value(name)?,
            "bundle" => f.bundle = Some(PathBuf::from(value(name)?)),
            "socket" => f.socket = Some(value(name)?),
            "debug" => f.debug = inline.as_deref() != Some("false"),
            "v" | "version" => f.version = true,
            "info" => f.info = true,
            other => return Err(BootstrapError::Usage(format!("unknown flag -{other}"))),
        }
    }
    if f.namespace.is_empty() {
        f.namespace = std::env::var("NAMESPACE").unwrap_or_else(|_| "default".into());
    }
    Ok(f)
}

impl Flags {
    fn check_ids(&self) -> Result<(), BootstrapError> {
        husk_sandbox::id::validate(&self.id)
            .map_err(|e| BootstrapError::Usage(format!("-id: {e}")))?;
        paths::validate_namespace(&self.namespace).map_err(BootstrapError::Usage)
    }
}

/// What arrived on stdin at `start`.
#[derive(Debug, Clone, PartialEq)]
pub enum StartOptions {
    None,
    /// containerd 2.0–2.2: the handler's options as a raw Any.
    Any {
        type_url: String,
    },
    /// containerd 2.3+: BootstrapParams.
    Params {
        namespace: String,
        containerd_version: String,
        extensions: Vec<String>,
    },
}

/// Decodes stdin: BootstrapParams when it names this shim's id, else a raw
/// Any. Anything else is an error, so a handler with broken options fails
/// at `start` instead of running with defaults.
pub fn decode_options(buf: &[u8], id: &str) -> Result<StartOptions, BootstrapError> {
    if buf.is_empty() {
        return Ok(StartOptions::None);
    }
    if let Ok(p) = BootstrapParams::parse_from_bytes(buf) {
        if !p.instance_id.is_empty() && p.instance_id == id {
            return Ok(StartOptions::Params {
                namespace: p.namespace.clone(),
                containerd_version: p.containerd_version.clone(),
                extensions: p
                    .extensions
                    .iter()
                    .map(|e| {
                        e.value
                            .as_ref()
                            .map(|a| a.type_url.clone())
                            .unwrap_or_default()
                    })
                    .collect(),
            });
        }
    }
    let any = Any::parse_from_bytes(buf).map_err(|e| BootstrapError::Options(e.to_string()))?;
    if any.type_url.is_empty() && !any.value.is_empty() {
        return Err(BootstrapError::Options("an Any without a type URL".into()));
    }
    if any
        .type_url
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(BootstrapError::Options("type URL is malformed".into()));
    }
    Ok(StartOptions::Any {
        type_url: any.type_url,
    })
}

fn socket_alive(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// `start`: bind the socket, launch the long-lived server detached with
/// the socket as fd 3, write the bundle's `address` file and return the
/// bootstrap reply for stdout.
pub fn start(flags: &Flags, stdin: &[u8]) -> Result<String, BootstrapError> {
    flags.check_ids()?;
    let opts = decode_options(stdin, &flags.id)?;
    if let StartOptions::Params { namespace, .. } = &opts {
        if !namespace.is_empty() && *namespace != flags.namespace {
            return Err(BootstrapError::Options(format!(
                "bootstrap namespace {namespace:?} differs from -namespace {:?}",
                flags.namespace
            )));
        }
    }
    let sock = paths::socket_path(&flags.namespace, &flags.id);
    let address = format!("unix://{}", sock.display());
    let reply = format!("{{\"version\":3,\"address\":\"{address}\",\"protocol\":\"ttrpc\"}}");
    let dir = paths::socket_dir();
    fs::create_dir_all(&dir).map_err(io_err("mkdir", &dir))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err("chmod", &dir))?;
    if sock.exists() {
        if socket_alive(&sock) {
            // containerd retried start: the shim for this id already serves.
            return Ok(reply);
        }
        fs::remove_file(&sock).map_err(io_err("remove stale socket", &sock))?;
    }
    let listener = UnixListener::bind(&sock).map_err(io_err("bind", &sock))?;
    let spawned = (|| {
        fs::set_permissions(&sock, fs::Permissions::from_mode(0o600))
            .map_err(io_err("chmod", &sock))?;
        // Everything that can fail comes before the spawn: once the server
        // runs, `start` must not fail and leave it serving nobody.
        let cwd = std::env::current_dir().map_err(io_err("getcwd", "."))?;
        fs::write(cwd.join("address"), &address).map_err(io_err("write", cwd.join("address")))?;
        spawn_server(flags, listener)
    })();
    if let Err(e) = spawned {
        let _ = fs::remove_file(&sock);
        return Err(e);
    }
    Ok(reply)
}

/// The server's allocator settings, added to any the environment has:
/// no per-thread cache. Its freed chunks are invisible to malloc_trim and
/// pin the heap pages they sit on for the pod's life; without it a pod's
/// shim keeps ~44 KiB less heap (140 -> 96 KiB with one container), and
/// the server allocates too little for the cache to matter for speed.
pub fn malloc_tunables() -> String {
    const MINE: &str = "glibc.malloc.tcache_count=0";
    match std::env::var("GLIBC_TUNABLES") {
        Ok(t) if !t.is_empty() && !t.contains("tcache_count") => format!("{t}:{MINE}"),
        Ok(t) if !t.is_empty() => t,
        _ => MINE.to_string(),
    }
}

fn spawn_server(flags: &Flags, listener: UnixListener) -> Result<(), BootstrapError> {
    let exe = std::env::current_exe().map_err(io_err("locate", "/proc/self/exe"))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("-namespace")
        .arg(&flags.namespace)
        .arg("-id")
        .arg(&flags.id);
    if !flags.address.is_empty() {
        cmd.arg("-address").arg(&flags.address);
    }
    if !flags.publish_binary.is_empty() {
        cmd.arg("-publish-binary").arg(&flags.publish_binary);
    }
    if flags.debug {
        cmd.arg("-debug");
    }
    cmd.arg("serve")
        .env(LISTEN_FD_ENV, LISTEN_FD.to_string())
        .env("GLIBC_TUNABLES", malloc_tunables())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let fd = listener.as_raw_fd();
    // SAFETY: the hook runs in the forked child before exec and calls only
    // dup2, fcntl and setsid, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if fd == LISTEN_FD {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, LISTEN_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The server is not waited for: it outlives `start`, reparented away.
    cmd.spawn().map_err(io_err("spawn server", &exe))?;
    drop(listener);
    Ok(())
}

/// Takes the listening socket the server inherited as fd 3.
pub fn inherited_listener() -> Result<UnixListener, BootstrapError> {
    let fd: i32 = std::env::var(LISTEN_FD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            BootstrapError::Usage(format!(
                "serve needs {LISTEN_FD_ENV} (it is started by `start`)"
            ))
        })?;
    // SAFETY: `start` passed us this fd as our listening socket and nothing
    // else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let l = UnixListener::from(owned);
    // Fail early if it is not a listening socket.
    l.local_addr()
        .map_err(io_err("inherited socket", format!("fd {fd}")))?;
    // The fd must not leak into the pod holder.
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(l.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(l)
}

/// `delete`: clean up whatever a dead shim left for this id, and print a
/// DeleteResponse. Idempotent: a second run finds nothing and succeeds.
pub fn delete(flags: &Flags) -> Result<Vec<u8>, BootstrapError> {
    flags.check_ids()?;
    // The server goes first: alive, it would record the holder's death
    // below and write the state file back after it was removed.
    let killed_server = kill_stale_server(flags);
    let store = StateStore::new(paths::state_root(&flags.namespace));
    let mut resp = DeleteResponse::new();
    resp.exit_status = 128 + libc::SIGKILL as u32;
    resp.exited_at = MessageField::some(convert::timestamp(to_time(now_nanos())));
    let exe = std::env::current_exe().map_err(io_err("locate", "/proc/self/exe"))?;
    let host = Host::linux(exe)?;
    // The pod's containers first (containerd 2.1 runs delete for the pod
    // only), then the pod.
    let runtime_root = paths::runtime_root(&flags.namespace);
    husk_task::engine::reclaim_all(
        &host,
        &paths::task_registry(&flags.namespace, &flags.id),
        &runtime_root,
    )?;
    let bundle = match &flags.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().map_err(io_err("locate", "."))?,
    };
    if let Some(found) = husk_sandbox::engine::reclaim(&host, &store, &flags.id, &bundle)? {
        resp.pid = found.pid;
        if let Some(exit) = found.exit {
            resp.exit_status = exit.status;
            resp.exited_at = MessageField::some(convert::timestamp(exit.at));
        }
    } else {
        // Not a sandbox: a container of a husk pod whose shim died. Its
        // bundle says which runtime holds it and what is mounted.
        husk_task::engine::reclaim(&host, &bundle, &runtime_root)?;
    }
    let sock = paths::socket_path(&flags.namespace, &flags.id);
    if killed_server || !socket_alive(&sock) {
        match fs::remove_file(&sock) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err("remove", &sock)(e))
            }
            _ => {}
        }
    }
    resp.write_to_bytes()
        .map_err(|e| BootstrapError::Options(format!("encoding DeleteResponse: {e}")))
}

/// Ends the server for this id if it still runs: containerd calls `delete`
/// when it considers the shim dead, and a server it can no longer reach
/// must not linger. The pid comes from the bundle's `shim.pid` (`-bundle`,
/// else the working directory, as containerd runs it), or, when `delete`
/// races a server that has not written it yet or the file names another
/// process, from a scan of /proc; either way the argv (`-namespace`, `-id`,
/// `serve`) is checked before the process is signalled.
fn kill_stale_server(flags: &Flags) -> bool {
    let (ns, id) = (flags.namespace.as_str(), flags.id.as_str());
    let bundle = flags
        .bundle
        .clone()
        .or_else(|| std::env::current_dir().ok());
    let pidfile = bundle.map(|d| d.join(SHIM_PID_FILE));
    let recorded = pidfile
        .as_ref()
        .and_then(|f| fs::read_to_string(f).ok())
        .and_then(|text| text.trim().parse::<u32>().ok())
        .filter(|p| crate::server_proc::is_shim_server(*p, Some(ns), id));
    // No pid file (the server may not have written it yet), or one that
    // names another process: look for the server itself.
    let server = recorded.or_else(|| crate::server_proc::shim_server_in(ns, id));
    let mut killed = false;
    if let Some(pid) = server.filter(|p| *p != std::process::id()) {
        // A pidfd pins the process: the signal cannot reach a reused pid,
        // and it turns readable only once the process has fully exited,
        // its listening socket closed.
        // (No pidfd: the process is already gone.)
        if let Ok(fd) = husk_sandbox::os::proc::pidfd_open(pid) {
            killed = pidfd_kill(&fd).is_ok();
            if killed && !wait_readable(&fd, std::time::Duration::from_secs(10)) {
                tracing::warn!(pid, "stale shim server did not exit within 10 s");
            }
        }
    }
    if let Some(f) = pidfile {
        let _ = fs::remove_file(f);
    }
    killed
}

fn pidfd_kill(fd: &std::os::fd::OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal on a pidfd we own, with no siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// poll(2) on one fd until readable; false on timeout.
fn wait_readable(fd: &std::os::fd::OwnedFd, limit: std::time::Duration) -> bool {
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
    matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)), Ok(n) if n > 0)
}

/// `-info`: what containerd's introspection asks a shim (`RuntimeInfo`):
/// husk's name and version, the options it was given, and the OCI
/// runtime's features (`<runtime> features`, JSON), from which CRI learns,
/// for one, whether recursive read-only mounts are supported.
pub fn info(stdin: &[u8]) -> Result<Vec<u8>, BootstrapError> {
    use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};
    let given = if stdin.is_empty() {
        None
    } else {
        Some(Any::parse_from_bytes(stdin).map_err(|e| BootstrapError::Options(e.to_string()))?)
    };
    let opts = match &given {
        Some(a) => crate::runtime_options::decode(&a.type_url, &a.value)
            .map_err(|e| BootstrapError::Options(e.to_string()))?,
        None => husk_task::RuntimeOptions::default(),
    }
    .or(&husk_task::RuntimeOptions::load(&paths::config_file())?);
    let mut features = Any::new();
    features.type_url =
        "types.containerd.io/opencontainers/runtime-spec/1/features/Features".into();
    features.value = if opts.binary() == husk_task::runtime::native::NAME {
        husk_task::runtime::native::features()
    } else {
        let out = std::process::Command::new(opts.binary())
            .arg("features")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(io_err("run", opts.binary()))?;
        if !out.status.success() {
            return Err(BootstrapError::Options(format!(
                "{} features: {}",
                opts.binary(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        out.stdout
    };
    let mut version = RuntimeVersion::new();
    version.version = env!("CARGO_PKG_VERSION").into();
    let mut ri = RuntimeInfo::new();
    ri.name = "io.containerd.husk.v1".into();
    ri.version = MessageField::some(version);
    ri.options = given.into();
    ri.features = MessageField::some(features);
    ri.write_to_bytes()
        .map_err(|e| BootstrapError::Options(format!("encoding RuntimeInfo: {e}")))
}

/// Writes bytes to stdout and flushes.
pub fn emit(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn containerd_argv() {
        let f = parse_args(args(&[
            "-namespace",
            "k8s.io",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "abc",
            "-debug",
            "start",
        ]))
        .unwrap();
        assert_eq!(f.namespace, "k8s.io");
        assert_eq!(f.id, "abc");
        assert!(f.debug);
        assert_eq!(f.action.as_deref(), Some("start"));
        let f = parse_args(args(&["--id=x", "-bundle", "/b", "delete"])).unwrap();
        assert_eq!(f.bundle, Some(PathBuf::from("/b")));
        assert_eq!(f.action.as_deref(), Some("delete"));
        assert!(parse_args(args(&["-v"])).unwrap().version);
        assert!(parse_args(args(&["-bogus", "start"])).is_err());
        assert!(parse_args(args(&["-id"])).is_err());
    }

    #[test]
    fn options_forms() {
        assert_eq!(decode_options(b"", "a").unwrap(), StartOptions::None);
        let mut any = Any::new();
        any.type_url = "containerd.runc.v1.Options".into();
        any.value = vec![0x08, 0x01];
        assert_eq!(
            decode_options(&any.write_to_bytes().unwrap(), "a").unwrap(),
            StartOptions::Any {
                type_url: "containerd.runc.v1.Options".into()
            }
        );
        let mut p = BootstrapParams::new();
        p.instance_id = "a".into();
        p.namespace = "k8s.io".into();
        p.containerd_version = "2.3.0".into();
        match decode_options(&p.write_to_bytes().unwrap(), "a").unwrap() {
            StartOptions::Params {
                namespace,
                containerd_version,
                ..
            } => {
                assert_eq!(namespace, "k8s.io");
                assert_eq!(containerd_version, "2.3.0");
            }
            other => panic!("{other:?}"),
        }
        assert!(decode_options(b"\xff\xff\xff\xff", "a").is_err());
        assert!(decode_options(b"garbage!", "a").is_err());
    }
}
