//! The long-lived shim server: a current-thread tokio runtime serving the
//! Sandbox service on the socket `start` handed over as fd 3.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use containerd_shim_protos::sandbox_async::create_sandbox;
use containerd_shim_protos::shim_async::create_task;
use husk_sandbox::engine::Host;
use husk_sandbox::{Engine, StateStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::bootstrap::{inherited_listener, BootstrapError, Flags};
use crate::gate::Gated;
use crate::paths;
use crate::pod::Pod;
use crate::service::SandboxService;
use crate::task::TaskService;

/// How long the server keeps answering after the last sandbox is shut
/// down, waiting for containerd to close its connections. Exiting at once
/// makes containerd's RemovePodSandbox fail with "ttrpc: closed".
const LINGER: Duration = Duration::from_secs(2);

/// A connection that counts itself while it lives.
struct Counted {
    inner: Gated<UnixStream>,
    live: Arc<watch::Sender<usize>>,
}

impl Counted {
    fn new(inner: Gated<UnixStream>, live: Arc<watch::Sender<usize>>) -> Self {
        live.send_modify(|n| *n += 1);
        Counted { inner, live }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Logs go to the bundle's `log` FIFO when containerd provides one.
fn init_logging(debug: bool) {
    let sink: Box<dyn std::io::Write + Send> = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("log")
    {
        Ok(f) => {
            // Blocking writes from here on: never drop a line.
            // SAFETY: fcntl on a file we own.
            unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_SETFL, 0) };
            Box::new(f)
        }
        Err(_) => Box::new(std::io::sink()),
    };
    let level = if debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let _ = tracing::subscriber::set_global_default(crate::log::LineLogger::new(level, sink));
}

/// The program pod holders run: `$HUSK_PAUSE`, else `husk-pause` next to
/// the shim (a 1.3 KB static program: ~5 KiB PSS per pod), else the shim
/// binary itself, which runs the same loop when called as `husk-pause`.
pub fn pause_program(shim: std::path::PathBuf) -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("HUSK_PAUSE").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let sibling = shim.with_file_name(husk_sandbox::os::pause::PAUSE_ARGV0);
    if sibling.is_file() {
        sibling
    } else {
        shim
    }
}

/// How long a shim that holds no sandbox and has no client waits before it
/// exits (containerd died between `start` and CreateSandbox, say).
/// `HUSK_IDLE_EXIT_SECS` overrides it (tests).
fn idle_limit() -> Duration {
    let secs = std::env::var("HUSK_IDLE_EXIT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// Resolves once the shim has held no sandbox and had no connection for
/// the idle limit without a break.
async fn idle(pod: Arc<Pod>, live: Arc<watch::Sender<usize>>) {
    let limit = idle_limit();
    let step = (limit / 4).max(Duration::from_millis(100));
    let mut idle_for = Duration::ZERO;
    loop {
        tokio::time::sleep(step).await;
        if pod.is_empty() && *live.borrow() == 0 {
            idle_for += step;
            if idle_for >= limit {
                return;
            }
        } else {
            idle_for = Duration::ZERO;
        }
    }
}

/// Who may call the shim: root, or the uid that owns the socket's
/// directory. A peer whose credentials cannot be read may not.
pub fn peer_allowed(peer: Option<u32>, owner: Option<u32>) -> bool {
    match peer {
        Some(0) => true,
        Some(uid) => owner == Some(uid),
        None => false,
    }
}

/// The ttrpc server for `pod` on `listener`: the Sandbox and Task
/// services; each connection checked against `owner` (see
/// [`peer_allowed`]), counted in `live`, and behind the service gate.
pub fn server(
    pod: Arc<Pod>,
    listener: tokio::net::UnixListener,
    owner: Option<u32>,
    live: Arc<watch::Sender<usize>>,
) -> ttrpc::asynchronous::Server {
    let sandbox = create_sandbox(Arc::new(SandboxService::new(pod.clone())));
    let task = create_task(Arc::new(TaskService::new(pod)));
    let known: Arc<HashSet<String>> =
        Arc::new(sandbox.keys().chain(task.keys()).cloned().collect());
    let incoming = futures::stream::unfold(listener, move |l| {
        let live = live.clone();
        let known = known.clone();
        async move {
            loop {
                match l.accept().await {
                    Ok((s, _)) => {
                        let uid = s.peer_cred().ok().map(|c| c.uid());
                        if peer_allowed(uid, owner) {
                            return Some((Ok(Counted::new(Gated::new(s, known), live)), l));
                        }
                        tracing::warn!(
                            ?uid,
                            "connection refused: peer is not root or the socket's owner"
                        );
                    }
                    Err(e) => return Some((Err(e), l)),
                }
            }
        }
    });
    ttrpc::asynchronous::Server::new()
        .add_listener(ttrpc::asynchronous::transport::Listener::new(incoming))
        .register_service(sandbox)
        .register_service(task)
}

pub fn serve(flags: &Flags) -> Result<(), BootstrapError> {
    init_logging(flags.debug);
    let listener = inherited_listener()?;
    // Like containerd's own shims: the bundle records the server's pid, so
    // `delete` can end a server that containerd gave up on.
    let _ = std::fs::write(
        crate::bootstrap::SHIM_PID_FILE,
        std::process::id().to_string(),
    );
    // Blocking-pool threads (a container's status pipe, cgroup removal)
    // end soon after their work instead of idling 10 s with a stack each.
    let rt = tokio::runtime::Builder::new_current_thread()
        .thread_keep_alive(std::time::Duration::from_millis(200))
        .enable_all()
        .build()
        .map_err(|e| BootstrapError::Io {
            op: "build runtime",
            path: ".".into(),
            source: e,
        })?;
    rt.block_on(run(flags, listener))
}

async fn run(
    flags: &Flags,
    listener: std::os::unix::net::UnixListener,
) -> Result<(), BootstrapError> {
    let exe = std::env::current_exe().map_err(|e| BootstrapError::Io {
        op: "locate",
        path: "/proc/self/exe".into(),
        source: e,
    })?;
    // Containers' inits and exec processes are reparented to the shim when
    // the runtime that started them exits: their exit statuses are exact.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER and an integer argument.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let host = Host::linux(pause_program(exe.clone()))?;
    let engine = Engine::new(
        host.clone(),
        StateStore::new(paths::state_root(&flags.namespace)),
    );
    match engine.restore(&flags.id) {
        Ok(true) => tracing::info!(id = %flags.id, "restored sandbox state after a shim restart"),
        Ok(false) => {}
        // A damaged record is not trusted: the sandbox is unknown to this
        // server (NotFound), and `shim delete` salvages it from the kernel.
        Err(husk_sandbox::Error::State { path, source })
            if source.kind() == std::io::ErrorKind::InvalidData =>
        {
            tracing::error!(path = %path.display(), error = %source, "sandbox record unreadable: not restored");
        }
        Err(e) => return Err(e.into()),
    }
    let events: Arc<dyn husk_task::EventSink> = match std::env::var("TTRPC_ADDRESS") {
        Ok(a) if !a.is_empty() => {
            Arc::new(crate::events::Publisher::start(a, flags.namespace.clone()))
        }
        _ => Arc::new(husk_task::events::NoEvents),
    };
    let cgroups = host.cgroups.clone();
    let tasks = husk_task::Tasks::new(
        host,
        Arc::new(husk_task::runtime::Binaries {
            root: paths::runtime_root(&flags.namespace),
            cgroups,
            // The running image itself, even if an upgrade replaced or
            // removed the file since: the helper must speak this shim's plan.
            helper: std::path::PathBuf::from("/proc/self/exe"),
        }),
        events,
        &flags.namespace,
        paths::console_dir(),
    )
    .with_registry(paths::task_registry(&flags.namespace, &flags.id));
    let defaults = husk_task::RuntimeOptions::load(&paths::config_file()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "husk config ignored");
        husk_task::RuntimeOptions::default()
    });
    let pod = Pod::new(engine, tasks, defaults);
    tokio::spawn(crate::reaper::run());
    let io_err = |op: &'static str| {
        move |e: std::io::Error| BootstrapError::Io {
            op,
            path: paths::socket_path(&flags.namespace, &flags.id),
            source: e,
        }
    };
    listener
        .set_nonblocking(true)
        .map_err(io_err("set nonblocking"))?;
    let listener =
        tokio::net::UnixListener::from_std(listener).map_err(io_err("register socket"))?;
    let live = Arc::new(watch::channel(0usize).0);
    // Besides the socket's 0600 mode in a 0700 directory: a peer that is
    // neither root nor the directory's owner is turned away at accept.
    let owner = {
        use std::os::unix::fs::MetadataExt;
        paths::socket_path(&flags.namespace, &flags.id)
            .parent()
            .and_then(|d| std::fs::metadata(d).ok())
            .map(|m| m.uid())
    };
    let mut server = server(pod.clone(), listener, owner, live.clone());
    server.start().await.map_err(|e| BootstrapError::Io {
        op: "start ttrpc server",
        path: paths::socket_path(&flags.namespace, &flags.id),
        source: std::io::Error::other(e.to_string()),
    })?;
    tracing::info!(id = %flags.id, ns = %flags.namespace, "serving");

    let mut term = signal(SignalKind::terminate()).map_err(io_err("signal handler"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io_err("signal handler"))?;
    let mut gate_rx = pod.exit_gate();
    tokio::select! {
        _ = idle(pod.clone(), live.clone()) => {
            tracing::info!("no sandbox and no client for {:?}: exiting", idle_limit());
        }
        _ = gate_rx.wait_for(|open| *open) => {
            tracing::info!("last sandbox shut down; exiting once containerd disconnects");
            let mut rx = live.subscribe();
            let _ = tokio::time::timeout(LINGER, rx.wait_for(|n| *n == 0)).await;
        }
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    server.stop_listen().await;
    let sock = paths::socket_path(&flags.namespace, &flags.id);
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::peer_allowed;

    #[test]
    fn only_root_or_the_socket_owner_may_call() {
        assert!(peer_allowed(Some(0), Some(1000)));
        assert!(peer_allowed(Some(0), None));
        assert!(peer_allowed(Some(1000), Some(1000)));
        assert!(!peer_allowed(Some(1001), Some(1000)));
        assert!(!peer_allowed(Some(65534), None));
        assert!(!peer_allowed(None, Some(0)));
    }
}
