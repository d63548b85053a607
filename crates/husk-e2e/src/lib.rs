//! A small CRI client (kubelet's gRPC API) for husk's end-to-end tests and
//! pod benchmarks, talking to the private containerd that
//! `scripts/containerd-env.sh up` starts.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    DnsConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StopPodSandboxRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// What `containerd-env.sh env` prints, read from the environment.
#[derive(Debug, Clone)]
pub struct Env {
    pub socket: PathBuf,
    pub state: PathBuf,
    pub cgroup_parent: String,
    pub pidfile: PathBuf,
    /// The image containers run (busybox, imported by containerd-env.sh).
    pub image: String,
}

impl Env {
    /// `None` when the private containerd is not configured: the caller
    /// prints a loud SKIPPED line.
    pub fn from_env() -> Option<Env> {
        let socket = std::env::var_os("HUSK_E2E_CRI_SOCK")?;
        Some(Env {
            socket: socket.into(),
            state: std::env::var_os("HUSK_E2E_STATE")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/run/husk-e2e".into()),
            cgroup_parent: std::env::var("HUSK_E2E_CGROUP_PARENT")
                .unwrap_or_else(|_| "husk-e2e".into()),
            pidfile: std::env::var_os("HUSK_E2E_PIDFILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/run/husk-e2e/containerd.pid".into()),
            image: std::env::var("HUSK_E2E_IMAGE")
                .unwrap_or_else(|_| "husk.local/busybox:1".into()),
        })
    }

    pub fn containerd_pid(&self) -> Result<u32> {
        Ok(fs::read_to_string(&self.pidfile)?.trim().parse()?)
    }
}

/// The environment for a test, or `None` after a loud SKIPPED line.
pub fn test_env() -> Option<Env> {
    let e = Env::from_env();
    if e.is_none() {
        eprintln!("\n*** SKIPPED: no private containerd (run scripts/containerd-env.sh up and export its env) ***\n");
    }
    e
}

/// A pod uid unique to this test process.
pub fn uid(tag: &str) -> String {
    format!("{}-{tag}", std::process::id())
}

pub type Cri = RuntimeServiceClient<Channel>;

pub async fn connect(socket: &Path) -> Result<Cri> {
    let path = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:0")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .with_context(|| format!("connecting to CRI at {}", socket.display()))?;
    Ok(RuntimeServiceClient::new(channel))
}

/// A pod config as kubelet would send it, under the e2e cgroup parent.
pub fn pod_config(env: &Env, name: &str, uid: &str, host_network: bool) -> PodSandboxConfig {
    let mode = |host: bool| {
        if host {
            NamespaceMode::Node as i32
        } else {
            NamespaceMode::Pod as i32
        }
    };
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: String::new(),
        dns_config: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["e2e.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/{}/pod{uid}", env.cgroup_parent),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: mode(host_network),
                    pid: NamespaceMode::Pod as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn run_pod(cri: &mut Cri, config: PodSandboxConfig, handler: &str) -> Result<String> {
    let r = cri
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: handler.into(),
        })
        .await
        .map_err(|s| anyhow!("RunPodSandbox: {}: {}", s.code(), s.message()))?;
    Ok(r.into_inner().pod_sandbox_id)
}

/// Status and the parsed verbose `info` JSON.
pub async fn pod_status(
    cri: &mut Cri,
    id: &str,
) -> Result<(k8s_cri::v1::PodSandboxStatus, serde_json::Value)> {
    let r = cri
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await
        .map_err(|s| anyhow!("PodSandboxStatus: {}: {}", s.code(), s.message()))?
        .into_inner();
    let info = r
        .info
        .get("info")
        .map(|s| serde_json::from_str(s))
        .transpose()?
        .unwrap_or_else(|| serde_json::json!(r.info));
    let status = r.status.ok_or_else(|| anyhow!("no status"))?;
    Ok((status, info))
}

pub async fn stop_pod(cri: &mut Cri, id: &str) -> Result<()> {
    cri.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .map_err(|s| anyhow!("StopPodSandbox: {}: {}", s.code(), s.message()))?;
    Ok(())
}

pub async fn remove_pod(cri: &mut Cri, id: &str) -> Result<()> {
    cri.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .map_err(|s| anyhow!("RemovePodSandbox: {}: {}", s.code(), s.message()))?;
    Ok(())
}

pub use husk_sandbox::inspect::{
    alive, cmdline, mounts_mentioning, processes_with_arg as processes_mentioning,
};

/// The husk shim server for a pod.
pub fn husk_shim_pid(id: &str) -> Option<u32> {
    husk_shim::server_proc::shim_server(id)
}

/// Removes a removed pod's `cgroup_parent` (`<parent>/pod<uid>`) from every
/// hierarchy, as kubelet does: runc makes the parent directories of the
/// pause container's cgroup but removes only its own.
pub fn remove_pod_cgroup(env: &Env, uid: &str) {
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in rd.flatten() {
        let _ = fs::remove_dir(h.path().join(&env.cgroup_parent).join(format!("pod{uid}")));
    }
}

/// cgroup directories named `name` anywhere under the e2e parent.
pub fn cgroup_dirs(env: &Env, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    for h in rd.flatten() {
        let base = h.path().join(&env.cgroup_parent);
        walk(&base, name, &mut out);
    }
    out
}

fn walk(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let p = e.path();
            if p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(name))
            {
                out.push(p.clone());
            }
            walk(&p, name, out);
        }
    }
}

/// Waits for `f` to hold, up to `secs`.
pub async fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Result<()> {
    let t0 = std::time::Instant::now();
    while !f() {
        if t0.elapsed() > Duration::from_secs(secs) {
            bail!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The husk pieces of a pod, read from its verbose status `info`.
#[derive(Debug, Clone)]
pub struct HuskPod {
    pub id: String,
    pub holder: u32,
    pub netns: Option<PathBuf>,
    pub bundle: PathBuf,
    pub cgroup_paths: Vec<PathBuf>,
}

impl HuskPod {
    pub fn from_info(id: &str, info: &serde_json::Value) -> Result<HuskPod> {
        let s = |k: &str| info.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let ns_net = s("ns.net").ok_or_else(|| anyhow!("no ns.net in info {info}"))?;
        let holder = ns_net
            .trim_start_matches("/proc/")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("bad ns.net {ns_net}"))?;
        Ok(HuskPod {
            id: id.to_string(),
            holder,
            netns: s("network").and_then(|n| n.strip_prefix("join:").map(PathBuf::from)),
            bundle: s("bundle")
                .map(PathBuf::from)
                .ok_or_else(|| anyhow!("no bundle in info"))?,
            cgroup_paths: s("cgroup_paths")
                .map(|p| p.split(',').map(PathBuf::from).collect())
                .unwrap_or_default(),
        })
    }

    /// Everything husk and containerd made for the pod is gone: the shim,
    /// its socket and state, the holder, cgroups, mounts, netns, bundle.
    pub async fn assert_gone(&self) -> Result<()> {
        let id = self.id.clone();
        eventually("the husk shim to exit", 10, || husk_shim_pid(&id).is_none()).await?;
        let sock = husk_shim::paths::socket_path("k8s.io", &self.id);
        eventually("the shim socket to go", 10, || !sock.exists()).await?;
        let holder = self.holder;
        eventually("the pod holder to die", 10, || !alive(holder)).await?;
        let state = husk_shim::paths::state_root("k8s.io").join(&self.id);
        if state.exists() {
            bail!("husk state {} left", state.display());
        }
        for d in &self.cgroup_paths {
            if d.exists() {
                bail!("cgroup {} left", d.display());
            }
        }
        let m = mounts_mentioning(&self.id);
        if !m.is_empty() {
            bail!("mounts left: {m:?}");
        }
        if let Some(n) = &self.netns {
            if n.exists() {
                bail!("netns {} left", n.display());
            }
        }
        if self.bundle.exists() {
            bail!("bundle {} left", self.bundle.display());
        }
        Ok(())
    }
}

/// containerd's version as `containerd --version` prints it, as numbers.
pub fn containerd_version(pid: u32) -> Option<(u32, u32, u32)> {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let out = std::process::Command::new(exe)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v = text.split_whitespace().nth(2)?;
    let mut it = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

// ---- containers ------------------------------------------------------

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatsRequest, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, RemoveContainerRequest,
    StartContainerRequest, StopContainerRequest, UpdateContainerResourcesRequest,
};

/// A container of the e2e image running `args` (through `sh -c` when one
/// string), its log at `<pod log dir>/<name>.log`.
pub fn container_config(env: &Env, name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: env.image.clone(),
            ..Default::default()
        }),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            resources: Some(LinuxContainerResources::default()),
        }),
        ..Default::default()
    }
}

fn status_err(what: &'static str) -> impl Fn(tonic::Status) -> anyhow::Error {
    move |s| anyhow!("{what}: {}: {}", s.code(), s.message())
}

/// CreateContainer + StartContainer; returns the container id.
pub async fn run_container(
    cri: &mut Cri,
    pod_id: &str,
    pod: &PodSandboxConfig,
    config: ContainerConfig,
) -> Result<String> {
    let id = cri
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.into(),
            config: Some(config),
            sandbox_config: Some(pod.clone()),
        })
        .await
        .map_err(status_err("CreateContainer"))?
        .into_inner()
        .container_id;
    cri.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .map_err(status_err("StartContainer"))?;
    Ok(id)
}

/// ContainerStatus: the status and the verbose info JSON.
pub async fn container_status(
    cri: &mut Cri,
    id: &str,
) -> Result<(k8s_cri::v1::ContainerStatus, serde_json::Value)> {
    let r = cri
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .map_err(status_err("ContainerStatus"))?
        .into_inner();
    let info = r
        .info
        .get("info")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(serde_json::Value::Null);
    Ok((r.status.context("no status")?, info))
}

/// Waits until the container has exited; returns its status.
pub async fn wait_exited(
    cri: &mut Cri,
    id: &str,
    secs: u64,
) -> Result<k8s_cri::v1::ContainerStatus> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (st, _) = container_status(cri, id).await?;
        if st.state == k8s_cri::v1::ContainerState::ContainerExited as i32 {
            return Ok(st);
        }
        if std::time::Instant::now() > deadline {
            bail!("container {id} still {} after {secs} s", st.state);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// ExecSync: (exit code, stdout, stderr).
pub async fn exec_sync(
    cri: &mut Cri,
    id: &str,
    cmd: &[&str],
    timeout_secs: i64,
) -> Result<(i32, String, String)> {
    let r = cri
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_secs,
        })
        .await
        .map_err(status_err("ExecSync"))?
        .into_inner();
    Ok((
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    ))
}

pub async fn stop_container(cri: &mut Cri, id: &str, timeout: i64) -> Result<()> {
    cri.stop_container(StopContainerRequest {
        container_id: id.into(),
        timeout,
    })
    .await
    .map_err(status_err("StopContainer"))?;
    Ok(())
}

pub async fn remove_container(cri: &mut Cri, id: &str) -> Result<()> {
    cri.remove_container(RemoveContainerRequest {
        container_id: id.into(),
    })
    .await
    .map_err(status_err("RemoveContainer"))?;
    Ok(())
}

pub async fn container_stats(cri: &mut Cri, id: &str) -> Result<k8s_cri::v1::ContainerStats> {
    cri.container_stats(ContainerStatsRequest {
        container_id: id.into(),
    })
    .await
    .map_err(status_err("ContainerStats"))?
    .into_inner()
    .stats
    .context("no stats")
}

pub async fn update_resources(
    cri: &mut Cri,
    id: &str,
    resources: LinuxContainerResources,
) -> Result<()> {
    cri.update_container_resources(UpdateContainerResourcesRequest {
        container_id: id.into(),
        linux: Some(resources),
        ..Default::default()
    })
    .await
    .map_err(status_err("UpdateContainerResources"))?;
    Ok(())
}

/// The v1 memory cgroup directory of a process, from /proc/<pid>/cgroup.
pub fn memory_cgroup_of(pid: u32) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = husk_task::spec::proc_cgroup(&text, false)?;
    Some(Path::new("/sys/fs/cgroup/memory").join(rel.strip_prefix("/").ok()?))
}
