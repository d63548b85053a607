//! `huskctl bench`: N sandboxes through create/start/stop/shutdown, serial
//! and C at a time, with p50/p99 per RPC, ping round trip, and the PSS of
//! the shim and the pod holder.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use husk_sandbox::inspect::pss_kib;
use husk_sandbox::PodConfig;
use husk_shim::server_proc::shim_server;
use serde_json::json;

use crate::client::{self, CreateArgs, Shim};
use crate::output::Out;

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Sandboxes per phase.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub count: usize,
    /// Sandboxes in flight in the concurrent phase.
    #[arg(short = 'c', long, default_value_t = 4)]
    pub concurrency: usize,
    /// Sandboxes alive at once while PSS is measured.
    #[arg(long, default_value_t = 20)]
    pub pss_pods: usize,
    /// Pings per sandbox.
    #[arg(long, default_value_t = 20)]
    pub pings: usize,
    /// Give every sandbox a fresh network namespace instead of joining one
    /// made up front (as CRI does: containerd makes the netns, CNI fills it).
    #[arg(long)]
    pub fresh_netns: bool,
}

/// A network namespace made for the bench with `ip netns add`, removed on drop.
struct BenchNetns(String);

impl BenchNetns {
    fn new() -> Result<Self> {
        let name = format!("husk-bench-{}", std::process::id());
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .context("running `ip netns add` (iproute2)")?
            .success();
        if !ok {
            bail!("ip netns add {name} failed");
        }
        Ok(BenchNetns(name))
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }
}

impl Drop for BenchNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

type Samples = BTreeMap<&'static str, Vec<f64>>;

fn us(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e6
}

fn args(ns: &str, id: String, netns: Option<&Path>) -> CreateArgs {
    CreateArgs {
        bundle: client::bundle_dir(ns, &id),
        netns: netns.map(Path::to_path_buf),
        pod: PodConfig {
            hostname: "bench".into(),
            ..Default::default()
        },
        id,
        ..Default::default()
    }
}

/// Runs a shim argv action (`start` or `delete`, which exec and wait) on
/// the blocking pool, so concurrent pods do not serialise on it.
async fn shim_exec<T: Send + 'static>(
    shim_bin: &Path,
    ns: &str,
    a: &CreateArgs,
    action: fn(&Path, &str, &str, &Path) -> Result<T>,
) -> Result<T> {
    let (bin, ns, id, bundle) = (
        shim_bin.to_path_buf(),
        ns.to_string(),
        a.id.clone(),
        a.bundle.clone(),
    );
    tokio::task::spawn_blocking(move || action(&bin, &ns, &id, &bundle)).await?
}

async fn up(ns: &str, shim_bin: &Path, a: &CreateArgs, s: &mut Samples) -> Result<(Shim, u32)> {
    fs::create_dir_all(&a.bundle)?;
    let t0 = Instant::now();
    let address = shim_exec(shim_bin, ns, a, client::launch).await?;
    s.entry("shim start (exec)").or_default().push(us(t0));
    let shim = Shim::connect(&address).await?;
    let t0 = Instant::now();
    client::create(&shim, a).await?;
    let create = us(t0);
    s.entry("CreateSandbox").or_default().push(create);
    let t0 = Instant::now();
    let pid = client::start(&shim, &a.id).await?;
    let start = us(t0);
    s.entry("StartSandbox").or_default().push(start);
    s.entry("create+start").or_default().push(create + start);
    Ok((shim, pid))
}

async fn down(
    ns: &str,
    shim_bin: &Path,
    shim: Shim,
    a: &CreateArgs,
    s: &mut Samples,
) -> Result<()> {
    let t0 = Instant::now();
    client::stop(&shim, &a.id, 0).await?;
    s.entry("StopSandbox").or_default().push(us(t0));
    let t0 = Instant::now();
    client::shutdown(&shim, &a.id).await?;
    s.entry("ShutdownSandbox").or_default().push(us(t0));
    drop(shim);
    let t0 = Instant::now();
    shim_exec(shim_bin, ns, a, client::delete).await?;
    s.entry("shim delete (exec)").or_default().push(us(t0));
    let _ = fs::remove_file(a.bundle.join("address"));
    let _ = fs::remove_dir(&a.bundle);
    Ok(())
}

async fn cycle(
    ns: String,
    shim_bin: PathBuf,
    id: String,
    pings: usize,
    netns: Option<PathBuf>,
) -> Result<Samples> {
    let mut s = Samples::new();
    let a = args(&ns, id, netns.as_deref());
    let (shim, _pid) = up(&ns, &shim_bin, &a, &mut s).await?;
    for _ in 0..pings {
        let t0 = Instant::now();
        client::ping(&shim, &a.id).await?;
        s.entry("PingSandbox").or_default().push(us(t0));
    }
    let t0 = Instant::now();
    client::status(&shim, &a.id, false).await?;
    s.entry("SandboxStatus").or_default().push(us(t0));
    let t0 = Instant::now();
    client::metrics(&shim, &a.id).await?;
    s.entry("SandboxMetrics").or_default().push(us(t0));
    down(&ns, &shim_bin, shim, &a, &mut s).await?;
    Ok(s)
}

fn merge(into: &mut Samples, from: Samples) {
    for (k, mut v) in from {
        into.entry(k).or_default().append(&mut v);
    }
}

pub(crate) fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

pub async fn run(ns: &str, shim_bin: PathBuf, b: &BenchArgs, out: &Out) -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("bench runs real sandboxes: run it as root");
    }
    if b.count == 0 || b.concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    let tag = std::process::id();
    let shared = if b.fresh_netns {
        None
    } else {
        Some(BenchNetns::new()?)
    };
    let netns = shared.as_ref().map(BenchNetns::path);
    let mut rows = Vec::new();

    // Serial.
    let mut serial = Samples::new();
    for i in 0..b.count {
        let s = cycle(
            ns.to_string(),
            shim_bin.clone(),
            format!("bench-{tag}-s{i}"),
            b.pings,
            netns.clone(),
        )
        .await?;
        merge(&mut serial, s);
    }
    // Concurrent.
    let mut conc = Samples::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(b.concurrency));
    let mut set = tokio::task::JoinSet::new();
    let t_all = Instant::now();
    for i in 0..b.count {
        let permit = sem.clone().acquire_owned().await?;
        let (ns, bin, id, pings, nn) = (
            ns.to_string(),
            shim_bin.clone(),
            format!("bench-{tag}-c{i}"),
            b.pings,
            netns.clone(),
        );
        set.spawn(async move {
            let r = cycle(ns, bin, id, pings, nn).await;
            drop(permit);
            r
        });
    }
    while let Some(r) = set.join_next().await {
        merge(&mut conc, r.context("bench task")??);
    }
    let conc_wall = t_all.elapsed().as_secs_f64();

    for (phase, samples) in [("serial", &mut serial), ("concurrent", &mut conc)] {
        for (op, v) in samples.iter_mut() {
            let n = v.len();
            rows.push(json!({
                "phase": phase, "op": op, "n": n,
                "p50_us": (pct(v, 50.0) * 10.0).round() / 10.0,
                "p99_us": (pct(v, 99.0) * 10.0).round() / 10.0,
            }));
        }
    }

    // Memory: K sandboxes alive at once.
    let k = b.pss_pods.max(1);
    let mut alive = Vec::new();
    let mut scratch = Samples::new();
    for i in 0..k {
        let a = args(ns, format!("bench-{tag}-m{i}"), netns.as_deref());
        let (shim, pid) = up(ns, &shim_bin, &a, &mut scratch).await?;
        alive.push((shim, pid, a));
    }
    let mut shim_pss = Vec::new();
    let mut holder_pss = Vec::new();
    for (_, pid, a) in &alive {
        if let Some(p) = shim_server(&a.id).and_then(pss_kib) {
            shim_pss.push(p as f64);
        }
        if let Some(p) = pss_kib(*pid) {
            holder_pss.push(p as f64);
        }
    }
    for (shim, _, a) in alive {
        down(ns, &shim_bin, shim, &a, &mut scratch).await?;
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let mem = json!({
        "pods_alive": k,
        "shim_pss_kib": (mean(&shim_pss) * 10.0).round() / 10.0,
        "holder_pss_kib": (mean(&holder_pss) * 10.0).round() / 10.0,
        "per_pod_pss_kib": ((mean(&shim_pss) + mean(&holder_pss)) * 10.0).round() / 10.0,
        "shim_rss_note": "PSS from /proc/<pid>/smaps_rollup, averaged over the pods alive",
    });

    if out.json {
        println!(
            "{}",
            json!({"latency": rows, "memory": mem, "concurrency": b.concurrency, "count": b.count,
            "concurrent_wall_s": conc_wall, "fresh_netns": b.fresh_netns})
        );
    } else {
        println!(
            "husk bench: {} sandboxes serial, {} with concurrency {} ({:.2} s wall)",
            b.count, b.count, b.concurrency, conc_wall
        );
        out.table(&["phase", "op", "n", "p50_us", "p99_us"], &rows);
        println!();
        println!("memory with {k} pods alive: shim PSS {:.0} KiB + holder PSS {:.0} KiB = {:.0} KiB per pod",
            mean(&shim_pss), mean(&holder_pss), mean(&shim_pss) + mean(&holder_pss));
    }
    Ok(())
}
