//! husk's own OCI runtime: containers made by the shim itself, with no
//! runtime binary exec'd. The shim makes the container's cgroup and sets
//! its limits, then re-executes its own binary as a small helper
//! ([`child`]) that joins the cgroup by writing `0` into it (no pid
//! migration, so no RCU grace period on cgroup v1), enters the pod's
//! namespaces, and forks the container's process.
//!
//! State kept for `delete` after a shim restart: `<root>/<id>.husk.json`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use husk_sandbox::os::Cgroups;
use serde::{Deserialize, Serialize};

use super::{CreateOpts, ExecOpts, OciRuntime, RuntimeError};

pub mod child;
pub mod process;
pub mod resources;
pub mod rootfs;
pub mod seccomp;

/// The name that selects this runtime in `BinaryName` (or none at all).
pub const NAME: &str = "husk";

/// What outlives the shim: enough to kill and clean up the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub pid: u32,
    pub start_time: Option<u64>,
    pub cgroup: PathBuf,
    /// The cgroup directories this container made (removed on delete).
    pub created: Vec<PathBuf>,
}

/// Between create and start: the start pipe and the status pipe.
struct Pending {
    start: OwnedFd,
    status: OwnedFd,
}

pub struct Native {
    /// The binary run as the helper (the shim itself).
    pub helper: PathBuf,
    pub root: PathBuf,
    pub cgroups: Arc<dyn Cgroups>,
    /// Set by the options; refused at create.
    pub systemd_cgroup: bool,
    pending: Mutex<Option<Pending>>,
}

fn failed(command: &'static str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Failed {
        binary: NAME.into(),
        command,
        message: message.into(),
    }
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| failed("create", format!("pipe: {e}")))
}

/// Reaps the helper, which exits right after it reports the pid; its
/// status tells nothing the status pipe did not. Polled with WNOHANG for
/// at most 500 ms: nothing may hang a Create on it. A helper not reaped
/// here is an unclaimed zombie, which the shim's subreaper sweep reaps
/// within two seconds.
async fn reap_helper(mut helper: std::process::Child) {
    for _ in 0..100 {
        match helper.try_wait() {
            Ok(None) => tokio::time::sleep(Duration::from_millis(5)).await,
            Ok(Some(_)) | Err(_) => return,
        }
    }
    tracing::debug!(
        pid = helper.id(),
        "helper not reaped in 500 ms; the subreaper sweep will"
    );
}

/// What the helper reported.
#[derive(Debug, Default)]
struct Report {
    pid: Option<u32>,
    ready: bool,
    error: Option<String>,
}

/// Reads status lines until `ready`, an error, or EOF, on the blocking
/// pool with plain blocking reads, a byte at a time (the lines are short,
/// and nothing past `ready` may be read ahead: the start's report comes
/// after it).
async fn read_status(fd: OwnedFd, until_ready: bool) -> (Report, Option<OwnedFd>) {
    tokio::task::spawn_blocking(move || read_status_blocking(fd, until_ready))
        .await
        .unwrap_or_else(|e| {
            let report = Report {
                error: Some(format!("status reader: {e}")),
                ..Report::default()
            };
            (report, None)
        })
}

fn read_status_blocking(fd: OwnedFd, until_ready: bool) -> (Report, Option<OwnedFd>) {
    use std::io::Read;
    let mut report = Report::default();
    let mut file = std::fs::File::from(fd);
    let mut line = Vec::new();
    loop {
        let mut b = [0u8; 1];
        match file.read(&mut b) {
            Ok(0) => return (report, None),
            Ok(_) if b[0] != b'\n' => {
                line.push(b[0]);
                continue;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return (report, None),
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        line.clear();
        if let Some(p) = text.strip_prefix("pid ") {
            report.pid = p.parse().ok();
        } else if text == "ready" {
            report.ready = true;
            if until_ready {
                return (report, Some(file.into()));
            }
        } else if let Some(e) = text.strip_prefix("error ") {
            report.error = Some(e.to_string());
            return (report, None);
        }
    }
}

impl Native {
    pub fn new(
        helper: PathBuf,
        root: PathBuf,
        cgroups: Arc<dyn Cgroups>,
        systemd_cgroup: bool,
    ) -> Native {
        Native {
            helper,
            root,
            cgroups,
            systemd_cgroup,
            pending: Mutex::new(None),
        }
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}.husk.json"))
    }

    fn load(&self, id: &str) -> Option<State> {
        serde_json::from_slice(&std::fs::read(self.state_path(id)).ok()?).ok()
    }

    fn save(&self, id: &str, st: &State) -> Result<(), RuntimeError> {
        std::fs::create_dir_all(&self.root)
            .and_then(|()| {
                let path = self.state_path(id);
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, serde_json::to_vec(st).unwrap_or_default())?;
                std::fs::rename(&tmp, &path)
            })
            .map_err(|e| failed("create", format!("state: {e}")))
    }

    fn alive(st: &State) -> bool {
        st.start_time.is_some() && start_time(st.pid) == st.start_time
    }

    /// Runs the helper with `plan`; fd 3 gets `status_w`, fd 4 `start_r`.
    fn spawn(
        &self,
        plan: &child::Plan,
        stdio: super::Stdio,
        status_w: OwnedFd,
        start_r: Option<OwnedFd>,
        command: &'static str,
    ) -> Result<std::process::Child, RuntimeError> {
        use std::os::unix::process::CommandExt;
        let json = serde_json::to_string(plan).map_err(|e| failed(command, e.to_string()))?;
        // Out of the way of fds 0–4 before the child's dup2s.
        let high = |fd: &OwnedFd| {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
                // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing
                // else owns.
                .map(|raw| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
                .map_err(|e| failed(command, format!("dup: {e}")))
        };
        let status_fd = high(&status_w)?;
        let start_fd = match &start_r {
            Some(f) => Some(high(f)?),
            None => None,
        };
        drop(status_w);
        drop(start_r);
        let io = |f: Option<OwnedFd>| {
            f.map(std::process::Stdio::from)
                .unwrap_or_else(std::process::Stdio::null)
        };
        let mut c = std::process::Command::new(&self.helper);
        c.arg0(child::INIT_ARGV0)
            .arg(json)
            .stdin(io(stdio.stdin))
            .stdout(io(stdio.stdout))
            .stderr(io(stdio.stderr));
        let (s, t) = (
            status_fd.as_raw_fd(),
            start_fd.as_ref().map(|f| f.as_raw_fd()),
        );
        // SAFETY: the closure runs between fork and exec and calls only
        // dup2, which is async-signal-safe; both sources are >= 10, so
        // neither is overwritten by the other's dup2.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(s, child::STATUS_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(t) = t {
                    if libc::dup2(t, child::START_FD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = c.spawn().map_err(|source| RuntimeError::Spawn {
            binary: self.helper.display().to_string(),
            source,
        });
        drop(status_fd);
        drop(start_fd);
        child
    }

    /// Kills whatever is left in the container's cgroup and waits until
    /// it is empty (bounded), then removes the directories it made.
    async fn teardown(&self, st: &State) -> Result<(), RuntimeError> {
        for _ in 0..500 {
            match self.cgroups.pids(&st.cgroup) {
                Ok(p) if p.is_empty() => break,
                Ok(_) => {
                    let _ = self.cgroups.kill_all(&st.cgroup, libc::SIGKILL);
                }
                Err(_) => break,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cg = self.cgroups.clone();
        let created = st.created.clone();
        tokio::task::spawn_blocking(move || cg.remove(&created))
            .await
            .map_err(|e| failed("delete", e.to_string()))?
            .map_err(|e| failed("delete", e.to_string()))
    }

    async fn freeze(&self, id: &str, frozen: bool) -> Result<(), RuntimeError> {
        let command = if frozen { "pause" } else { "resume" };
        let st = self
            .load(id)
            .ok_or_else(|| failed(command, format!("container {id} does not exist")))?;
        for dir in self.cgroups.host_paths(&st.cgroup) {
            let (file, value, done) = if dir.join("freezer.state").exists() {
                (
                    "freezer.state",
                    if frozen { "FROZEN" } else { "THAWED" },
                    None,
                )
            } else if dir.join("cgroup.freeze").exists() {
                ("cgroup.freeze", if frozen { "1" } else { "0" }, Some(()))
            } else {
                continue;
            };
            let path = dir.join(file);
            std::fs::write(&path, value)
                .map_err(|e| failed(command, format!("{}: {e}", path.display())))?;
            if done.is_none() {
                // v1 reports FREEZING until every task is frozen.
                for _ in 0..1000 {
                    let now = std::fs::read_to_string(&path).unwrap_or_default();
                    if now.trim() == value {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            return Ok(());
        }
        Err(failed(command, "no freezer for the container's cgroup"))
    }
}

/// What husk's own runtime does not do, refused before anything is made
/// (runc, one option away, does them).
fn unsupported(spec: &oci_spec::runtime::Spec, systemd_cgroup: bool) -> Result<(), String> {
    const HINT: &str = "not supported by husk's runtime (set BinaryName = 'runc')";
    if systemd_cgroup {
        return Err(format!("the systemd cgroup driver is {HINT}"));
    }
    if let Some(h) = spec.hooks() {
        let any = [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()));
        if any {
            return Err(format!("OCI hooks are {HINT}"));
        }
    }
    if let Some(l) = spec.linux() {
        if l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        {
            return Err(format!("user namespace id mappings are {HINT}"));
        }
        if l.intel_rdt().is_some() {
            return Err(format!("Intel RDT is {HINT}"));
        }
    }
    Ok(())
}

/// The cgroup a spec names, or `/<id>` as runc picks when it names none.
fn cgroup_of(spec: &oci_spec::runtime::Spec, id: &str) -> Result<PathBuf, RuntimeError> {
    match spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
    {
        Some(p) => crate::spec::cgroup_rel(&p.to_string_lossy())
            .map_err(|e| failed("create", e.to_string())),
        None => Ok(PathBuf::from("/").join(id)),
    }
}

fn load_spec(bundle: &Path) -> Result<oci_spec::runtime::Spec, RuntimeError> {
    let path = bundle.join("config.json");
    let text =
        std::fs::read(&path).map_err(|e| failed("create", format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| failed("create", format!("{}: {e}", path.display())))
}

#[async_trait]
impl OciRuntime for Native {
    async fn create(&self, o: CreateOpts<'_>) -> Result<(), RuntimeError> {
        let spec = load_spec(o.bundle)?;
        unsupported(&spec, self.systemd_cgroup).map_err(|e| failed("create", e))?;
        if let Some(p) = spec.process() {
            process::validate(p).map_err(|e| failed("create", e))?;
        }
        let rel = cgroup_of(&spec, o.id)?;
        let mut st = State {
            pid: 0,
            start_time: None,
            cgroup: rel.clone(),
            created: Vec::new(),
        };
        // Written ahead, then again as steps land: a shim killed at any
        // point leaves state naming the cgroup, so `shim delete` finds it.
        self.save(o.id, &st)?;
        st.created = match self.cgroups.create(&rel) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(self.state_path(o.id));
                return Err(failed("create", format!("cgroup: {e}")));
            }
        };
        if let Err(e) = self.save(o.id, &st) {
            self.teardown(&st).await.ok();
            let _ = std::fs::remove_file(self.state_path(o.id));
            return Err(e);
        }
        let CreateOpts {
            id,
            bundle,
            pid_file,
            console_socket,
            stdio,
        } = o;
        let r = self
            .create_in(id, bundle, pid_file, console_socket, stdio, &spec, &mut st)
            .await;
        if let Err(e) = r {
            self.teardown(&st).await.ok();
            let _ = std::fs::remove_file(self.state_path(id));
            return Err(e);
        }
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| failed("start", format!("container {id} is not created")))?;
        // One byte into an empty pipe: never blocks.
        std::io::Write::write_all(&mut std::fs::File::from(pending.start), &[1])
            .map_err(|e| failed("start", format!("start pipe: {e}")))?;
        let (report, _) = read_status(pending.status, false).await;
        match report.error {
            Some(e) => Err(failed("start", e)),
            None => Ok(()),
        }
    }

    async fn exec(&self, o: ExecOpts<'_>) -> Result<(), RuntimeError> {
        let st = self
            .load(o.id)
            .filter(Self::alive)
            .ok_or_else(|| failed("exec", format!("container {} is not running", o.id)))?;
        let bundle = o
            .process
            .parent()
            .ok_or_else(|| failed("exec", "process file has no directory"))?;
        let plan = child::Plan {
            bundle: bundle.to_path_buf(),
            cgroup_join: self.cgroups.join_files(&st.cgroup),
            cgroup_dirs: Vec::new(),
            console_socket: o.console_socket.map(Path::to_path_buf),
            exec: Some(child::ExecPlan {
                init_pid: st.pid,
                process: o.process.to_path_buf(),
            }),
        };
        let (status_r, status_w) = pipe()?;
        let helper = self.spawn(&plan, o.stdio, status_w, None, "exec")?;
        let (report, _) = read_status(status_r, false).await;
        reap_helper(helper).await;
        if let Some(e) = report.error {
            if let Some(pid) = report.pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(failed("exec", e));
        }
        let pid = report
            .pid
            .ok_or_else(|| failed("exec", "the helper reported no pid"))?;
        std::fs::write(o.pid_file, pid.to_string())
            .map_err(|e| failed("exec", format!("pid file: {e}")))
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        let st = self
            .load(id)
            .ok_or_else(|| failed("kill", format!("container {id} does not exist")))?;
        let sig = signal as i32;
        if all {
            return self
                .cgroups
                .kill_all(&st.cgroup, sig)
                .map_err(|e| failed("kill", e.to_string()));
        }
        if !Self::alive(&st) {
            return Err(failed("kill", "container not running"));
        }
        // SAFETY: kill(2) with a pid checked against its start time.
        if unsafe { libc::kill(st.pid as i32, sig) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(failed("kill", e.to_string()));
            }
        }
        Ok(())
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let Some(st) = self.load(id) else {
            return Ok(());
        };
        if Self::alive(&st) && !force {
            return Err(failed("delete", format!("container {id} is running")));
        }
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.teardown(&st).await?;
        let _ = std::fs::remove_file(self.state_path(id));
        Ok(())
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.freeze(id, true).await
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.freeze(id, false).await
    }

    async fn update(&self, id: &str, resources: &[u8]) -> Result<(), RuntimeError> {
        let st = self
            .load(id)
            .ok_or_else(|| failed("update", format!("container {id} does not exist")))?;
        let r: oci_spec::runtime::LinuxResources = serde_json::from_slice(resources)
            .map_err(|e| failed("update", format!("resources: {e}")))?;
        resources::apply(
            self.cgroups.version(),
            &self.cgroups.host_paths(&st.cgroup),
            &r,
        )
        .map_err(|e| failed("update", e))
    }
}

impl Native {
    #[allow(clippy::too_many_arguments)]
    async fn create_in(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        stdio: super::Stdio,
        spec: &oci_spec::runtime::Spec,
        st: &mut State,
    ) -> Result<(), RuntimeError> {
        let dirs = self.cgroups.host_paths(&st.cgroup);
        if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            resources::apply(self.cgroups.version(), &dirs, r).map_err(|e| failed("create", e))?;
        }
        resources::allow_default_devices(&dirs).map_err(|e| failed("create", e))?;
        let plan = child::Plan {
            bundle: bundle.to_path_buf(),
            cgroup_join: self.cgroups.join_files(&st.cgroup),
            cgroup_dirs: dirs,
            console_socket: console_socket.map(Path::to_path_buf),
            exec: None,
        };
        let (status_r, status_w) = pipe()?;
        let (start_r, start_w) = pipe()?;
        let helper = self.spawn(&plan, stdio, status_w, Some(start_r), "create")?;
        tracing::debug!(id, helper = helper.id(), "create: helper spawned");
        let (report, status) = read_status(status_r, true).await;
        tracing::debug!(id, ?report, "create: helper reported");
        reap_helper(helper).await;
        if let Some(pid) = report.pid {
            st.pid = pid;
            st.start_time = start_time(pid);
        }
        // Saved before anything can fail, so delete finds the container.
        self.save(id, st)?;
        match (report.error, report.ready, status) {
            (None, true, Some(status)) => {
                std::fs::write(pid_file, st.pid.to_string())
                    .map_err(|e| failed("create", format!("pid file: {e}")))?;
                *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(Pending {
                    start: start_w,
                    status,
                });
                Ok(())
            }
            (Some(e), _, _) => Err(failed("create", e)),
            _ => Err(failed(
                "create",
                "the container's process exited before it was ready",
            )),
        }
    }
}

/// `shim delete` after a dead shim: kills what is left of the container
/// and removes its cgroup and state. Blocking; bounded.
pub fn reclaim(root: &Path, id: &str, cgroups: &dyn Cgroups) -> Result<(), String> {
    let path = root.join(format!("{id}.husk.json"));
    // A shim killed between writing the state and renaming it into place.
    let _ = std::fs::remove_file(path.with_extension("tmp"));
    let Ok(data) = std::fs::read(&path) else {
        return Ok(());
    };
    let st: State =
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", path.display()))?;
    for _ in 0..500 {
        match cgroups.pids(&st.cgroup) {
            Ok(p) if p.is_empty() => break,
            Ok(_) => {
                let _ = cgroups.kill_all(&st.cgroup, libc::SIGKILL);
            }
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The leaf too: state written ahead of the cgroup's creation names it
    // but not yet the directories made.
    cgroups
        .remove(&cgroups.host_paths(&st.cgroup))
        .and_then(|()| cgroups.remove(&st.created))
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// What `<runtime> features` would print for husk's own runtime (OCI
/// runtime-spec features JSON), for containerd's introspection.
pub fn features() -> Vec<u8> {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.1",
        "hooks": [],
        "mountOptions": rootfs::OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": &process::CAPS[..],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        }
    })
    .to_string()
    .into_bytes()
}
