//! `huskctl churn`: sandboxes and containers made and removed many times,
//! straight through the shim (no containerd), with a leak census before,
//! during and after. Fails on any leak.
//!
//! Phase 1: N sandbox cycles (launch, CreateSandbox, StartSandbox,
//! StopSandbox, ShutdownSandbox, `shim delete`), C in flight; every
//! `--every` cycles the census and the fd count and RSS of a freshly
//! started shim are printed. Phase 2: one long-lived pod; container
//! cycles (create, start, exec, kill, remove) and execs in a running
//! container; its shim's RSS and fd count after the first tenth and at
//! the end must be within 10% of each other.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use husk_sandbox::PodConfig;
use husk_shim::paths;
use serde_json::json;

use crate::client::{self, CreateArgs, Shim};
use crate::container::{self, RunArgs};
use crate::output::Out;

#[derive(Args, Clone)]
pub struct ChurnArgs {
    /// Sandbox cycles: create → start → stop → shutdown → delete.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub cycles: usize,
    /// Sandbox cycles in flight.
    #[arg(short = 'c', long, default_value_t = 4)]
    pub concurrency: usize,
    /// Print the census and a fresh shim's fd count and RSS this often.
    #[arg(long, default_value_t = 1000)]
    pub every: usize,
    /// Container cycles (create, start, exec, kill, remove) in one pod.
    #[arg(long, default_value_t = 100)]
    pub container_cycles: usize,
    /// Execs in a running container of that pod.
    #[arg(long, default_value_t = 200)]
    pub execs: usize,
}

/// What a run may leave behind, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Census(pub(crate) BTreeMap<&'static str, usize>);

fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.flatten().count()).unwrap_or(0)
}

fn subdirs(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .count()
        })
        .unwrap_or(0)
}

impl Census {
    pub(crate) fn take(ns: &str) -> Census {
        let root = paths::run_root();
        let mut m = BTreeMap::new();
        let procs = husk_sandbox::inspect::all_pids()
            .into_iter()
            .filter(|p| {
                let c = husk_sandbox::inspect::cmdline(*p);
                c.contains("containerd-shim-husk")
                    || c.starts_with("husk-pause")
                    || c.starts_with("husk-init")
                    || fs::read_to_string(format!("/proc/{p}/cgroup"))
                        .is_ok_and(|g| g.contains(":/husk/"))
            })
            .count();
        m.insert("husk processes", procs);
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .map(|t| {
                let r = root.display().to_string();
                t.lines().filter(|l| l.contains(&r)).count()
            })
            .unwrap_or(0);
        m.insert("mounts under the run root", mounts);
        let cgroups = fs::read_dir("/sys/fs/cgroup")
            .map(|d| d.flatten().map(|h| subdirs(&h.path().join("husk"))).sum())
            .unwrap_or(0);
        m.insert("pod cgroups", cgroups);
        m.insert("state dirs", entries(&paths::state_root(ns)));
        m.insert("sockets", entries(&paths::socket_dir()));
        let bundles = client::bundle_dir(ns, "x");
        m.insert("bundles", bundles.parent().map(entries).unwrap_or(0));
        m.insert("runtime state", entries(&paths::runtime_root(ns)));
        m.insert("netns", entries(Path::new("/run/netns")));
        m.insert("huskctl fds", entries(Path::new("/proc/self/fd")));
        Census(m)
    }

    /// What differs, but huskctl's own fds (its runtime opens some lazily).
    pub(crate) fn diff(&self, before: &Census) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| **k != "huskctl fds")
            .filter(|(k, v)| before.0.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: {} before, {v} after", before.0.get(k).unwrap_or(&0)))
            .collect()
    }
}

pub(crate) fn sandbox_args(ns: &str, id: String) -> CreateArgs {
    CreateArgs {
        bundle: client::bundle_dir(ns, &id),
        pod: PodConfig {
            hostname: "churn".into(),
            ..Default::default()
        },
        id,
        ..Default::default()
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// One sandbox's life; returns its shim's (fds, RSS) once it served.
async fn sandbox_cycle(ns: String, bin: PathBuf, id: String) -> Result<(usize, u64)> {
    let a = sandbox_args(&ns, id);
    fs::create_dir_all(&a.bundle)?;
    let (b, n, i, d) = (bin.clone(), ns.clone(), a.id.clone(), a.bundle.clone());
    let address = blocking(move || client::launch(&b, &n, &i, &d)).await?;
    let shim = Shim::connect(&address).await?;
    client::create(&shim, &a).await?;
    client::start(&shim, &a.id).await?;
    let usage = husk_shim::server_proc::shim_server(&a.id)
        .map(husk_sandbox::inspect::fds_and_rss_kib)
        .unwrap_or((0, 0));
    client::stop(&shim, &a.id, 0).await?;
    client::shutdown(&shim, &a.id).await?;
    drop(shim);
    let (n, i, d) = (ns.clone(), a.id.clone(), a.bundle.clone());
    blocking(move || client::delete(&bin, &n, &i, &d)).await?;
    let _ = fs::remove_dir_all(&a.bundle);
    Ok(usage)
}

fn run_args(pod: &str, id: &str, args: &[&str]) -> RunArgs {
    RunArgs {
        pod: pod.into(),
        id: id.into(),
        rootfs: None,
        memory: None,
        stdout: None,
        share_pid: false,
        wait: false,
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

/// Phase 2: containers and execs in one pod; returns the shim's usage
/// after the first tenth and at the end.
async fn long_pod(
    ns: &str,
    bin: &Path,
    a: &ChurnArgs,
    out: &Out,
) -> Result<((usize, u64), (usize, u64))> {
    let pod = format!("churn-{}-long", std::process::id());
    let ca = sandbox_args(ns, pod.clone());
    fs::create_dir_all(&ca.bundle)?;
    let address = client::launch(bin, ns, &pod, &ca.bundle)?;
    let shim = Shim::connect(&address).await?;
    let r = long_pod_work(ns, &shim, &pod, a, out).await;
    // Whatever happened, the pod goes: shutdown removes its containers.
    let _ = client::stop(&shim, &pod, 0).await;
    let _ = client::shutdown(&shim, &pod).await;
    drop(shim);
    client::delete(bin, ns, &pod, &ca.bundle)?;
    let _ = fs::remove_dir_all(&ca.bundle);
    r
}

async fn long_pod_work(
    ns: &str,
    shim: &Shim,
    pod: &str,
    a: &ChurnArgs,
    out: &Out,
) -> Result<((usize, u64), (usize, u64))> {
    client::create(shim, &sandbox_args(ns, pod.to_string())).await?;
    client::start(shim, pod).await?;
    let spid = husk_shim::server_proc::shim_server(pod).context("the pod's shim")?;
    let total = a.container_cycles + a.execs;
    let tenth = (total / 10).max(1);
    let mut early = None;
    let mut done = 0usize;
    let mut tick = |done: usize| {
        if done == tenth {
            early = Some(husk_sandbox::inspect::fds_and_rss_kib(spid));
        }
    };
    let t0 = Instant::now();
    for i in 0..a.container_cycles {
        let id = format!("c{i}");
        container::run(shim, ns, &run_args(pod, &id, &["sleep", "1000"])).await?;
        let (code, _, _) = container::exec(shim, ns, pod, &id, &["true".into()]).await?;
        if code != 0 {
            bail!("exec in {id} exited {code}");
        }
        container::remove(shim, ns, pod, &id).await?;
        done += 1;
        tick(done);
    }
    if a.execs > 0 {
        container::run(shim, ns, &run_args(pod, "steady", &["sleep", "100000"])).await?;
        for _ in 0..a.execs {
            let (code, _, _) = container::exec(shim, ns, pod, "steady", &["true".into()]).await?;
            if code != 0 {
                bail!("exec exited {code}");
            }
            done += 1;
            tick(done);
        }
        container::remove(shim, ns, pod, "steady").await?;
    }
    // The shim trims its heap half a second after the last request.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let end = husk_sandbox::inspect::fds_and_rss_kib(spid);
    out.record(&json!({
        "phase": "long-lived pod",
        "container_cycles": a.container_cycles,
        "execs": a.execs,
        "seconds": t0.elapsed().as_secs_f64(),
        "shim_fds_early": early.map(|u| u.0),
        "shim_rss_kib_early": early.map(|u| u.1),
        "shim_fds_end": end.0,
        "shim_rss_kib_end": end.1,
    }));
    Ok((early.unwrap_or(end), end))
}

pub async fn run(ns: &str, bin: PathBuf, a: &ChurnArgs, out: &Out) -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("churn runs real sandboxes: run it as root");
    }
    if a.concurrency == 0 || a.every == 0 {
        bail!("--concurrency and --every must be at least 1");
    }
    let before = Census::take(ns);
    let tag = std::process::id();
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let mut set = tokio::task::JoinSet::new();
    let t0 = Instant::now();
    let mut samples = Vec::new();
    let mut finished = 0usize;
    let mut failures = Vec::new();
    for i in 0..a.cycles {
        let permit = sem.clone().acquire_owned().await?;
        let (n, b, id) = (ns.to_string(), bin.clone(), format!("churn-{tag}-{i}"));
        set.spawn(async move {
            let r = sandbox_cycle(n, b, id).await;
            drop(permit);
            (i, r)
        });
        while let Some(j) = set.try_join_next() {
            let (i, r) = j?;
            finished += 1;
            match r {
                Ok(u) if i.checked_rem(a.every) == Some(0) => samples.push((i, u)),
                Ok(_) => {}
                Err(e) => failures.push(format!("cycle {i}: {e:#}")),
            }
            if finished.checked_rem(a.every) == Some(0) {
                let c = Census::take(ns);
                out.record(&json!({"phase": "sandbox cycles", "done": finished,
                    "seconds": t0.elapsed().as_secs_f64(), "census": c.0}));
            }
        }
    }
    while let Some(j) = set.join_next().await {
        let (i, r) = j?;
        match r {
            Ok(u) if i.checked_rem(a.every) == Some(0) => samples.push((i, u)),
            Ok(_) => {}
            Err(e) => failures.push(format!("cycle {i}: {e:#}")),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    samples.sort();
    out.record(&json!({
        "phase": "sandbox cycles",
        "cycles": a.cycles,
        "concurrency": a.concurrency,
        "seconds": secs,
        "failures": failures.len(),
        "fresh_shim_fds_rss_kib": samples.iter().map(|(i, u)| json!({"cycle": i, "fds": u.0, "rss_kib": u.1})).collect::<Vec<_>>(),
    }));
    let mut problems = failures;
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        if last.1 .0 != first.1 .0 {
            problems.push(format!(
                "a fresh shim's fds went from {} to {}",
                first.1 .0, last.1 .0
            ));
        }
    }
    let after_sandboxes = Census::take(ns);
    problems.extend(after_sandboxes.diff(&before));
    if a.container_cycles + a.execs > 0 {
        let (early, end) = long_pod(ns, &bin, a, out).await?;
        if end.0 > early.0 + early.0 / 10 {
            problems.push(format!("long-lived shim fds {} -> {}", early.0, end.0));
        }
        if end.1 > early.1 + early.1 / 10 {
            problems.push(format!("long-lived shim RSS {} -> {} KiB", early.1, end.1));
        }
    }
    let after = Census::take(ns);
    problems.extend(after.diff(&before));
    out.record(
        &json!({"phase": "census", "before": before.0, "after": after.0, "leaks": problems}),
    );
    if !problems.is_empty() {
        bail!(
            "churn found {} problem(s): {}",
            problems.len(),
            problems.join("; ")
        );
    }
    Ok(())
}
