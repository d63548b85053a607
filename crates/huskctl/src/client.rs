//! Talking to a husk shim: launching it the way containerd does, and the
//! Sandbox API over ttrpc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::sandbox_api as api;
use containerd_shim_protos::sandbox_async::SandboxClient;
use containerd_shim_protos::types::mount::Mount as PbMount;
use husk_sandbox::PodConfig;
use husk_shim::{convert, cri, paths};
use ttrpc::context::{self, Context as Ctx};

pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Finds the shim binary: `--shim`, `$HUSK_SHIM`, next to huskctl, or PATH.
pub fn shim_binary(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("HUSK_SHIM") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        let sib = exe.with_file_name("containerd-shim-husk-v1");
        if sib.exists() {
            return sib;
        }
    }
    PathBuf::from("containerd-shim-husk-v1")
}

/// `containerd-shim-husk-v1 -namespace NS -id ID start`, in `bundle`, as
/// containerd runs it. Returns the address from the bootstrap reply.
pub fn launch(shim: &Path, ns: &str, id: &str, bundle: &Path) -> Result<String> {
    let out = Command::new(shim)
        .args(["-namespace", ns, "-id", id, "-address", "", "start"])
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", shim.display()))?;
    if !out.status.success() {
        bail!(
            "shim start failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "shim start replied {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    reply["address"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no address in the shim's reply"))
}

/// `containerd-shim-husk-v1 -namespace NS -id ID -bundle B delete`.
pub fn delete(shim: &Path, ns: &str, id: &str, bundle: &Path) -> Result<()> {
    let out = Command::new(shim)
        .args(["-namespace", ns, "-id", id, "-bundle"])
        .arg(bundle)
        .arg("delete")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", shim.display()))?;
    if !out.status.success() {
        bail!(
            "shim delete failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub fn ctx() -> Ctx {
    context::with_timeout(RPC_TIMEOUT.as_nanos() as i64)
}

/// No deadline: for Wait on a process that may run for a long time.
pub fn long_ctx() -> Ctx {
    Ctx::default()
}

/// Makes a ttrpc status readable: "sandbox x not found (NOT_FOUND)".
pub fn rpc_err(e: ttrpc::Error) -> anyhow::Error {
    match e {
        ttrpc::Error::RpcStatus(s) => anyhow!("{} ({:?})", s.message(), s.code()),
        other => anyhow!("{other}"),
    }
}

pub struct Shim {
    pub client: SandboxClient,
    /// The connection itself, for the Task service on the same socket.
    pub conn: ttrpc::asynchronous::Client,
    pub address: String,
}

impl Shim {
    pub async fn connect(address: &str) -> Result<Shim> {
        let c = ttrpc::asynchronous::Client::connect(address)
            .await
            .map_err(|e| anyhow!("connecting to {address}: {e}"))?;
        Ok(Shim {
            client: SandboxClient::new(c.clone()),
            conn: c,
            address: address.to_string(),
        })
    }
}

/// What `run`/`create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub netns: Option<PathBuf>,
    pub pod: PodConfig,
    pub rootfs_bind: Option<PathBuf>,
}

pub fn create_request(a: &CreateArgs) -> api::CreateSandboxRequest {
    let mut req = api::CreateSandboxRequest::new();
    req.sandbox_id = a.id.clone();
    req.bundle_path = a.bundle.display().to_string();
    if let Some(n) = &a.netns {
        req.netns_path = n.display().to_string();
    }
    let mut any = Any::new();
    any.type_url = "runtime.v1.PodSandboxConfig".into();
    any.value = cri::encode::pod_config(&a.pod);
    req.options = MessageField::some(any);
    if let Some(src) = &a.rootfs_bind {
        let mut m = PbMount::new();
        m.type_ = "bind".into();
        m.source = src.display().to_string();
        m.options = vec!["rbind".into(), "ro".into()];
        req.rootfs.push(m);
    }
    req
}

pub async fn create(shim: &Shim, a: &CreateArgs) -> Result<()> {
    shim.client
        .create_sandbox(ctx(), &create_request(a))
        .await
        .map_err(rpc_err)?;
    Ok(())
}

pub async fn start(shim: &Shim, id: &str) -> Result<u32> {
    let mut req = api::StartSandboxRequest::new();
    req.sandbox_id = id.into();
    Ok(shim
        .client
        .start_sandbox(ctx(), &req)
        .await
        .map_err(rpc_err)?
        .pid)
}

pub async fn status(shim: &Shim, id: &str, verbose: bool) -> Result<api::SandboxStatusResponse> {
    let mut req = api::SandboxStatusRequest::new();
    req.sandbox_id = id.into();
    req.verbose = verbose;
    shim.client
        .sandbox_status(ctx(), &req)
        .await
        .map_err(rpc_err)
}

pub async fn ping(shim: &Shim, id: &str) -> Result<()> {
    let mut req = api::PingRequest::new();
    req.sandbox_id = id.into();
    shim.client
        .ping_sandbox(ctx(), &req)
        .await
        .map_err(rpc_err)?;
    Ok(())
}

pub async fn platform(shim: &Shim, id: &str) -> Result<api::PlatformResponse> {
    let mut req = api::PlatformRequest::new();
    req.sandbox_id = id.into();
    shim.client.platform(ctx(), &req).await.map_err(rpc_err)
}

pub async fn stop(shim: &Shim, id: &str, timeout_secs: u32) -> Result<()> {
    let mut req = api::StopSandboxRequest::new();
    req.sandbox_id = id.into();
    req.timeout_secs = timeout_secs;
    shim.client
        .stop_sandbox(ctx(), &req)
        .await
        .map_err(rpc_err)?;
    Ok(())
}

pub async fn wait(shim: &Shim, id: &str) -> Result<api::WaitSandboxResponse> {
    let mut req = api::WaitSandboxRequest::new();
    req.sandbox_id = id.into();
    shim.client
        .wait_sandbox(context::with_timeout(0), &req)
        .await
        .map_err(rpc_err)
}

pub async fn shutdown(shim: &Shim, id: &str) -> Result<()> {
    let mut req = api::ShutdownSandboxRequest::new();
    req.sandbox_id = id.into();
    shim.client
        .shutdown_sandbox(ctx(), &req)
        .await
        .map_err(rpc_err)?;
    Ok(())
}

/// Metrics, decoded from whichever cgroup version the shim reported.
pub async fn metrics(shim: &Shim, id: &str) -> Result<BTreeMap<String, serde_json::Value>> {
    let mut req = api::SandboxMetricsRequest::new();
    req.sandbox_id = id.into();
    let resp = shim
        .client
        .sandbox_metrics(ctx(), &req)
        .await
        .map_err(rpc_err)?;
    let m = resp
        .metrics
        .as_ref()
        .ok_or_else(|| anyhow!("empty metrics reply"))?;
    let data = m
        .data
        .as_ref()
        .ok_or_else(|| anyhow!("metrics without data"))?;
    let mut out = BTreeMap::new();
    out.insert("id".into(), m.id.clone().into());
    out.insert("type".into(), data.type_url.clone().into());
    if let Some(ts) = m.timestamp.as_ref() {
        let t = convert::from_timestamp(ts);
        out.insert("timestamp".into(), humantime(t).into());
    }
    match data.type_url.as_str() {
        convert::V1_METRICS_URL => {
            let v = v1::Metrics::parse_from_bytes(&data.value)?;
            out.insert("cpu_usage_ns".into(), v.cpu.usage.total.into());
            out.insert("cpu_user_ns".into(), v.cpu.usage.user.into());
            out.insert("cpu_kernel_ns".into(), v.cpu.usage.kernel.into());
            out.insert("memory_usage_bytes".into(), v.memory.usage.usage.into());
            out.insert("memory_rss_bytes".into(), v.memory.total_rss.into());
            out.insert("memory_cache_bytes".into(), v.memory.total_cache.into());
            out.insert("pids_current".into(), v.pids.current.into());
            out.insert("pids_limit".into(), v.pids.limit.into());
            let rb: u64 = v
                .blkio
                .io_service_bytes_recursive
                .iter()
                .filter(|e| e.op == "Read")
                .map(|e| e.value)
                .sum();
            let wb: u64 = v
                .blkio
                .io_service_bytes_recursive
                .iter()
                .filter(|e| e.op == "Write")
                .map(|e| e.value)
                .sum();
            out.insert("io_read_bytes".into(), rb.into());
            out.insert("io_write_bytes".into(), wb.into());
        }
        convert::V2_METRICS_URL => {
            let v = v2::Metrics::parse_from_bytes(&data.value)?;
            out.insert("cpu_usage_usec".into(), v.cpu.usage_usec.into());
            out.insert("memory_usage_bytes".into(), v.memory.usage.into());
            out.insert("pids_current".into(), v.pids.current.into());
            out.insert("pids_limit".into(), v.pids.limit.into());
            out.insert(
                "io_read_bytes".into(),
                v.io.usage.iter().map(|e| e.rbytes).sum::<u64>().into(),
            );
            out.insert(
                "io_write_bytes".into(),
                v.io.usage.iter().map(|e| e.wbytes).sum::<u64>().into(),
            );
        }
        other => bail!("unknown metrics type {other}"),
    }
    Ok(out)
}

/// RFC 3339-ish UTC time without pulling in a date crate.
pub fn humantime(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let dd = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The shim's address for an id, unless given.
pub fn address_for(ns: &str, id: &str, given: Option<&str>) -> String {
    given
        .map(str::to_string)
        .unwrap_or_else(|| paths::address(ns, id))
}

/// Where huskctl keeps bundles of the sandboxes it creates.
pub fn bundle_dir(ns: &str, id: &str) -> PathBuf {
    paths::run_root().join("bundles").join(ns).join(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(humantime(t), "2023-11-14T22:13:20.000Z");
    }
}
