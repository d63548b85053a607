//! Containers in a husk pod, straight through the shim's Task service (no
//! containerd): a bundle from a directory rootfs or a minimal busybox one,
//! an OCI spec that joins the pod's namespaces, and output to files.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use containerd_shim_protos::api as tapi;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim_async::TaskClient;
use serde_json::json;

use crate::client::{self, ctx, rpc_err, Shim};

/// The applets a generated busybox rootfs links to.
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "ps", "hostname", "id", "true", "false", "head", "tail",
    "wget", "httpd", "env", "mount", "seq",
];

/// The capabilities a container gets by default (containerd's default set).
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// The pod (sandbox id) to run in.
    pub pod: String,
    /// Container id.
    #[arg(long)]
    pub id: String,
    /// A directory to use as the rootfs (default: a minimal busybox one,
    /// from the host's static /bin/busybox).
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Memory limit in bytes.
    #[arg(long)]
    pub memory: Option<i64>,
    /// Where the container's stdout and stderr go, as containerd names it:
    /// a FIFO path, `file:///path` or `binary:///path` (default: a file
    /// in the container's bundle, which `huskctl logs` reads).
    #[arg(long)]
    pub stdout: Option<String>,
    /// Share the pod's PID namespace (PID 1 is then the pod's holder).
    #[arg(long)]
    pub share_pid: bool,
    /// Wait for the container to exit and print its status.
    #[arg(long)]
    pub wait: bool,
    /// The command (default: sh).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// `<pod bundle>/containers/<id>`: removed with the pod's bundle.
pub fn bundle(ns: &str, pod: &str, id: &str) -> PathBuf {
    client::bundle_dir(ns, pod).join("containers").join(id)
}

pub fn log_file(bundle: &Path) -> PathBuf {
    bundle.join("output.log")
}

pub fn tasks(shim: &Shim) -> TaskClient {
    TaskClient::new(shim.conn.clone())
}

/// A rootfs with busybox and links to its applets.
fn busybox_rootfs(dir: &Path) -> Result<()> {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(dir.join(d))?;
    }
    let src = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("no busybox on the host (apt-get install busybox-static), or give --rootfs")?;
    fs::copy(src, dir.join("bin/busybox")).with_context(|| format!("copying {src}"))?;
    for a in APPLETS {
        let link = dir.join("bin").join(a);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    Ok(())
}

/// The OCI spec of a container in the pod whose holder is `holder`: the
/// pod's network, IPC and UTS namespaces (and PID with `share_pid`), its
/// own mount namespace, a cgroup beside the pod's.
pub fn spec(a: &RunArgs, rootfs: &Path, holder: u32, cgroup: &str) -> serde_json::Value {
    let args = if a.args.is_empty() {
        vec!["sh".to_string()]
    } else {
        a.args.clone()
    };
    let ns = |t: &str| json!({"type": t, "path": format!("/proc/{holder}/ns/{t}")});
    let mut namespaces = vec![
        json!({"type": "mount"}),
        ns("ipc"),
        ns("uts"),
        json!({"type": "network", "path": format!("/proc/{holder}/ns/net")}),
    ];
    namespaces.push(if a.share_pid {
        ns("pid")
    } else {
        json!({"type": "pid"})
    });
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(m) = a.memory {
        resources["memory"] = json!({"limit": m});
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"],
            "cwd": "/",
            "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
            "noNewPrivileges": true
        },
        "root": {"path": rootfs, "readonly": false},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroup,
            "resources": resources,
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Creates and starts a container in `pod`; returns (pid, bundle).
pub async fn run(shim: &Shim, ns: &str, a: &RunArgs) -> Result<(u32, PathBuf)> {
    let st = client::status(shim, &a.pod, true).await?;
    if st.state != "SANDBOX_READY" {
        bail!("pod {} is {}, not ready", a.pod, st.state);
    }
    let pod_cgroup = st.info.get("cgroup").cloned().unwrap_or_default();
    let parent = Path::new(&pod_cgroup)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let cgroup = format!("{}/{}", parent.trim_end_matches('/'), a.id);
    let bundle = bundle(ns, &a.pod, &a.id);
    if bundle.exists() {
        bail!("container {} exists in pod {}", a.id, a.pod);
    }
    fs::create_dir_all(&bundle)?;
    let r = create_and_start(shim, a, st.pid, &cgroup, &bundle).await;
    if r.is_err() {
        let _ = fs::remove_dir_all(&bundle);
    }
    r.map(|pid| (pid, bundle))
}

async fn create_and_start(
    shim: &Shim,
    a: &RunArgs,
    holder: u32,
    cgroup: &str,
    bundle: &Path,
) -> Result<u32> {
    let rootfs = match &a.rootfs {
        Some(r) => fs::canonicalize(r).with_context(|| format!("rootfs {}", r.display()))?,
        None => {
            let r = bundle.join("rootfs");
            busybox_rootfs(&r)?;
            r
        }
    };
    let spec = spec(a, &rootfs, holder, cgroup);
    fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&spec)?,
    )?;
    let out = a
        .stdout
        .clone()
        .unwrap_or_else(|| format!("file://{}", log_file(bundle).display()));
    let t = tasks(shim);
    let mut req = tapi::CreateTaskRequest::new();
    req.id = a.id.clone();
    req.bundle = bundle.display().to_string();
    req.stdout = out.clone();
    req.stderr = out;
    t.create(ctx(), &req).await.map_err(rpc_err)?;
    let mut s = tapi::StartRequest::new();
    s.id = a.id.clone();
    match t.start(ctx(), &s).await {
        Ok(r) => Ok(r.pid),
        Err(e) => {
            let mut d = tapi::DeleteRequest::new();
            d.id = a.id.clone();
            let _ = t.delete(ctx(), &d).await;
            Err(rpc_err(e))
        }
    }
}

/// Waits for a container (or exec) to exit: (status, exited at).
pub async fn wait(shim: &Shim, id: &str, exec_id: &str) -> Result<u32> {
    let mut w = tapi::WaitRequest::new();
    w.id = id.into();
    w.exec_id = exec_id.into();
    let r = tasks(shim)
        .wait(client::long_ctx(), &w)
        .await
        .map_err(rpc_err)?;
    Ok(r.exit_status)
}

pub async fn kill(shim: &Shim, id: &str, signal: u32) -> Result<()> {
    let mut k = tapi::KillRequest::new();
    k.id = id.into();
    k.signal = signal;
    tasks(shim).kill(ctx(), &k).await.map_err(rpc_err)?;
    Ok(())
}

/// Kills the container if it runs, waits, deletes it and its bundle.
/// Returns its exit status.
pub async fn remove(shim: &Shim, ns: &str, pod: &str, id: &str) -> Result<u32> {
    let t = tasks(shim);
    let mut st = tapi::StateRequest::new();
    st.id = id.into();
    let state = t.state(ctx(), &st).await.map_err(rpc_err)?;
    use containerd_shim_protos::types::task::Status;
    if state.status.enum_value() != Ok(Status::STOPPED) {
        kill(shim, id, libc::SIGKILL as u32).await?;
        wait(shim, id, "").await?;
    }
    let mut d = tapi::DeleteRequest::new();
    d.id = id.into();
    let r = t.delete(ctx(), &d).await.map_err(rpc_err)?;
    let dir = bundle(ns, pod, id);
    let _ = fs::remove_dir_all(&dir);
    if let Some(parent) = dir.parent() {
        let _ = fs::remove_dir(parent); // the pod's `containers`, once empty
    }
    Ok(r.exit_status)
}

/// Runs a command in a running container; returns (exit code, stdout,
/// stderr).
pub async fn exec(
    shim: &Shim,
    ns: &str,
    pod: &str,
    id: &str,
    args: &[String],
) -> Result<(u32, Vec<u8>, Vec<u8>)> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let exec_id = format!(
        "exec-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let dir = bundle(ns, pod, id);
    let (out, err) = (
        dir.join(format!("{exec_id}.out")),
        dir.join(format!("{exec_id}.err")),
    );
    let t = tasks(shim);
    let mut e = tapi::ExecProcessRequest::new();
    e.id = id.into();
    e.exec_id = exec_id.clone();
    e.stdout = format!("file://{}", out.display());
    e.stderr = format!("file://{}", err.display());
    let mut any = Any::new();
    any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    any.value = serde_json::to_vec(&json!({
        "args": args, "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"],
    }))?;
    e.spec = MessageField::some(any);
    t.exec(ctx(), &e).await.map_err(rpc_err)?;
    let mut s = tapi::StartRequest::new();
    s.id = id.into();
    s.exec_id = exec_id.clone();
    let started = t.start(ctx(), &s).await.map_err(rpc_err);
    let code = match started {
        Ok(_) => wait(shim, id, &exec_id).await,
        Err(e) => Err(e),
    };
    let mut d = tapi::DeleteRequest::new();
    d.id = id.into();
    d.exec_id = exec_id;
    let _ = t.delete(ctx(), &d).await;
    let stdout = fs::read(&out).unwrap_or_default();
    let stderr = fs::read(&err).unwrap_or_default();
    let _ = fs::remove_file(&out);
    let _ = fs::remove_file(&err);
    Ok((code?, stdout, stderr))
}
