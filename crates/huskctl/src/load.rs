//! `huskctl load`: N sandboxes alive at once, straight through the shim
//! (no containerd). Loads them C in flight, timing each pod (launch,
//! CreateSandbox, StartSandbox); at full load measures what they cost
//! (PSS of every shim and holder, and the drop in the host's
//! MemAvailable, which counts kernel memory too); tears them all down
//! (StopSandbox, ShutdownSandbox, `shim delete`), timed; then takes the
//! leak census. Fails on any failure or leak.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;

use crate::bench::pct;
use crate::churn::{blocking, sandbox_args, Census};
use crate::client::{self, Shim};
use crate::output::Out;

#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Sandboxes alive at once.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub pods: usize,
    /// Sandboxes loaded (and torn down) in flight.
    #[arg(short = 'c', long, default_value_t = 4)]
    pub concurrency: usize,
}

/// launch + CreateSandbox + StartSandbox; returns the holder's pid.
async fn load_one(ns: String, bin: PathBuf, id: String) -> Result<u32> {
    let a = sandbox_args(&ns, id);
    fs::create_dir_all(&a.bundle)?;
    let (b, n, i, d) = (bin, ns, a.id.clone(), a.bundle.clone());
    let address = blocking(move || client::launch(&b, &n, &i, &d)).await?;
    let shim = Shim::connect(&address).await?;
    client::create(&shim, &a).await?;
    client::start(&shim, &a.id).await
}

/// StopSandbox, ShutdownSandbox, `shim delete`.
async fn unload_one(ns: String, bin: PathBuf, id: String) -> Result<()> {
    let bundle = client::bundle_dir(&ns, &id);
    let shim = Shim::connect(&husk_shim::paths::address(&ns, &id)).await?;
    client::stop(&shim, &id, 0).await?;
    client::shutdown(&shim, &id).await?;
    drop(shim);
    blocking(move || {
        client::delete(&bin, &ns, &id, &bundle)?;
        fs::remove_dir_all(&bundle)?;
        Ok(())
    })
    .await
}

/// Runs `f` for every id, `c` at a time; returns each one's duration in
/// ms (in id order) and the failures.
async fn in_flight<F, Fut, T>(
    ids: &[String],
    c: usize,
    f: F,
) -> Result<(Vec<f64>, Vec<T>, Vec<String>)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(c));
    let mut set = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let permit = sem.clone().acquire_owned().await?;
        let fut = f(id.clone());
        set.spawn(async move {
            let t0 = Instant::now();
            let r = fut.await;
            drop(permit);
            (i, t0.elapsed().as_secs_f64() * 1e3, r)
        });
    }
    let mut done = Vec::new();
    while let Some(j) = set.join_next().await {
        done.push(j?);
    }
    done.sort_by_key(|d| d.0);
    let (mut ms, mut ok, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for (i, t, r) in done {
        ms.push(t);
        match r {
            Ok(v) => ok.push(v),
            Err(e) => failed.push(format!("{}: {e:#}", ids[i])),
        }
    }
    Ok((ms, ok, failed))
}

pub async fn run(ns: &str, bin: PathBuf, a: &LoadArgs, out: &Out) -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("load runs real sandboxes: run it as root");
    }
    if a.pods == 0 || a.concurrency == 0 {
        bail!("--pods and --concurrency must be at least 1");
    }
    let before = Census::take(ns);
    let mem_before = husk_sandbox::inspect::mem_available_kib();
    let tag = std::process::id();
    let ids: Vec<String> = (0..a.pods).map(|i| format!("load-{tag}-{i}")).collect();

    let t0 = Instant::now();
    let (ms, holders, failed) = in_flight(&ids, a.concurrency, |id| {
        load_one(ns.to_string(), bin.clone(), id)
    })
    .await?;
    let load_secs = t0.elapsed().as_secs_f64();
    let tenth = (a.pods / 10).max(1);
    let first = pct(&mut ms[..tenth].to_vec(), 50.0);
    let last = pct(&mut ms[a.pods - tenth..].to_vec(), 50.0);

    // Full load: let every shim trim its heap after its last request.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let at_load = Census::take(ns);
    let shims: Vec<u32> = ids
        .iter()
        .filter_map(|id| husk_shim::server_proc::shim_server_in(ns, id))
        .collect();
    let pss = |p: &u32| husk_sandbox::inspect::pss_kib(*p).unwrap_or(0);
    let shim_pss: u64 = shims.iter().map(pss).sum();
    let holder_pss: u64 = holders.iter().map(pss).sum();
    let mem_drop = mem_before.saturating_sub(husk_sandbox::inspect::mem_available_kib());
    let alive = holders.len().max(1) as f64;

    let t0 = Instant::now();
    let (_, _, unload_failed) = in_flight(&ids, a.concurrency, |id| {
        unload_one(ns.to_string(), bin.clone(), id)
    })
    .await?;
    let teardown_secs = t0.elapsed().as_secs_f64();
    let after = Census::take(ns);
    let mut problems: Vec<String> = failed.into_iter().chain(unload_failed).collect();
    problems.extend(after.diff(&before));
    let alive_procs = at_load.0.get("husk processes").copied().unwrap_or(0);
    out.record(&json!({
        "pods": a.pods,
        "concurrency": a.concurrency,
        "load_seconds": load_secs,
        "per_pod_ms_p50": pct(&mut ms.clone(), 50.0),
        "per_pod_ms_p99": pct(&mut ms.clone(), 99.0),
        "per_pod_ms_p50_first_tenth": first,
        "per_pod_ms_p50_last_tenth": last,
        "alive_at_full_load": holders.len(),
        "husk_processes_at_full_load": alive_procs,
        "pss_kib_per_pod": (shim_pss + holder_pss) as f64 / alive,
        "pss_kib_per_shim": shim_pss as f64 / alive,
        "pss_kib_per_holder": holder_pss as f64 / alive,
        "mem_available_drop_kib_per_pod": mem_drop as f64 / alive,
        "teardown_seconds": teardown_secs,
        "census_after": after.0,
        "leaks": problems,
    }));
    if !problems.is_empty() {
        bail!(
            "load found {} problem(s): {}",
            problems.len(),
            problems.join("; ")
        );
    }
    Ok(())
}
