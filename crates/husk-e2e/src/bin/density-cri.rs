//! density-cri: N pods alive at once through containerd's CRI, each with
//! one container, on handler `husk` and then on `runc` (containerd's Go
//! shim plus a pause container), in one run.
//!
//! Per handler: the pods are loaded C in flight (RunPodSandbox,
//! CreateContainer, StartContainer, timed per pod); at full load, PSS of
//! what each pod costs (its shim and holder or pause; the container's own
//! processes apart) and the drop in the host's MemAvailable per pod (the
//! kernel's share too); then every pod is stopped and removed, C in
//! flight, timed; then the leak check: no shim, holder, pause, container
//! process, cgroup, mount, netns or bundle of the run is left.
//!
//! usage: density-cri [-n PODS] [-c IN_FLIGHT] [--handlers husk,runc]
//! Needs the private containerd (`scripts/containerd-env.sh up`) and its
//! env; `scripts/density.sh` does both.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use husk_e2e::*;
use serde_json::json;

struct Args {
    n: usize,
    c: usize,
    handlers: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        n: 300,
        c: 4,
        handlers: vec!["husk".into(), "runc".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "-n" => a.n = it.next().context("-n needs a number")?.parse()?,
            "-c" => a.c = it.next().context("-c needs a number")?.parse()?,
            "--handlers" => {
                a.handlers = it
                    .next()
                    .context("--handlers needs a list")?
                    .split(',')
                    .map(str::to_string)
                    .collect()
            }
            other => bail!("unknown argument {other}; usage: density-cri [-n PODS] [-c IN_FLIGHT] [--handlers husk,runc]"),
        }
    }
    if a.n == 0 || a.c == 0 {
        bail!("-n and -c must be at least 1");
    }
    Ok(a)
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// One loaded pod: ids, and the processes it costs.
struct Loaded {
    id: String,
    uid: String,
    container: String,
    sandbox_pid: u32,
    container_pid: u32,
    husk: Option<HuskPod>,
}

async fn load_one(env: Env, mut cri: Cri, handler: String, i: usize) -> Result<Loaded> {
    let uid = format!("{}-d{handler}-{i}", std::process::id());
    let cfg = pod_config(&env, &format!("density{i}"), &uid, false);
    let id = run_pod(&mut cri, cfg.clone(), &handler).await?;
    let (_, info) = pod_status(&mut cri, &id).await?;
    let husk = if handler.starts_with("husk") {
        Some(HuskPod::from_info(&id, &info)?)
    } else {
        None
    };
    let sandbox_pid = match &husk {
        Some(p) => p.holder,
        None => info.get("pid").and_then(|v| v.as_u64()).unwrap_or(0) as u32,
    };
    let container = run_container(
        &mut cri,
        &id,
        &cfg,
        container_config(&env, "app", "exec sleep 100000"),
    )
    .await?;
    let (_, cinfo) = container_status(&mut cri, &container).await?;
    Ok(Loaded {
        id,
        uid,
        container,
        sandbox_pid,
        container_pid: cinfo["pid"].as_u64().unwrap_or(0) as u32,
        husk,
    })
}

async fn unload_one(env: Env, mut cri: Cri, p: Arc<Loaded>) -> Result<()> {
    stop_pod(&mut cri, &p.id).await?;
    remove_pod(&mut cri, &p.id).await?;
    remove_pod_cgroup(&env, &p.uid);
    Ok(())
}

/// What is left of the run's pods; empty when nothing is.
async fn leaks(env: &Env, pods: &[Arc<Loaded>]) -> Vec<String> {
    let mut out = Vec::new();
    for p in pods {
        if let Some(h) = &p.husk {
            if let Err(e) = h.assert_gone().await {
                out.push(format!("{}: {e:#}", p.id));
            }
        }
        for pid in [p.sandbox_pid, p.container_pid] {
            if pid != 0 && alive(pid) {
                out.push(format!("{}: process {pid} alive", p.id));
            }
        }
        let shims: Vec<u32> = processes_mentioning(&p.id)
            .into_iter()
            .filter(|q| cmdline(*q).contains("containerd-shim"))
            .collect();
        if !shims.is_empty() {
            out.push(format!("{}: shims {shims:?} alive", p.id));
        }
        for name in [&p.id, &p.container] {
            let m = mounts_mentioning(name);
            if !m.is_empty() {
                out.push(format!("{name}: mounts {m:?}"));
            }
        }
        let cg = cgroup_dirs(env, &format!("pod{}", p.uid));
        if !cg.is_empty() {
            out.push(format!("{}: cgroups {cg:?}", p.id));
        }
    }
    out
}

struct Row {
    handler: String,
    load_secs: f64,
    per_pod: Vec<f64>,
    pss_pod: f64,
    pss_container: f64,
    mem_drop: f64,
    teardown_secs: f64,
    leaks: Vec<String>,
}

async fn run_handler(env: &Env, cri: &Cri, handler: &str, a: &Args) -> Result<Row> {
    let netns_before = std::fs::read_dir("/run/netns")
        .map(|d| d.count())
        .unwrap_or(0);
    let mem_before = husk_sandbox::inspect::mem_available_kib();
    let sem = Arc::new(tokio::sync::Semaphore::new(a.c));
    let mut set = tokio::task::JoinSet::new();
    let t0 = Instant::now();
    for i in 0..a.n {
        let permit = sem.clone().acquire_owned().await?;
        let (e, c, h) = (env.clone(), cri.clone(), handler.to_string());
        set.spawn(async move {
            let t = Instant::now();
            let r = load_one(e, c, h, i).await;
            drop(permit);
            (i, t.elapsed().as_secs_f64() * 1e3, r)
        });
    }
    let mut done = Vec::new();
    while let Some(j) = set.join_next().await {
        done.push(j?);
    }
    let load_secs = t0.elapsed().as_secs_f64();
    done.sort_by_key(|d| d.0);
    let mut per_pod = Vec::new();
    let mut pods = Vec::new();
    let mut errors = Vec::new();
    for (i, ms, r) in done {
        per_pod.push(ms);
        match r {
            Ok(p) => pods.push(Arc::new(p)),
            Err(e) => errors.push(format!("{handler} pod {i}: {e:#}")),
        }
    }
    // Full load; husk shims trim their heaps 0.5 s after the last call.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let pss = |p: u32| husk_sandbox::inspect::pss_kib(p).unwrap_or(0);
    let (mut pod_total, mut ctr_total) = (0u64, 0u64);
    for p in &pods {
        let mut procs: Vec<u32> = processes_mentioning(&p.id)
            .into_iter()
            .filter(|q| cmdline(*q).contains("containerd-shim"))
            .collect();
        if p.sandbox_pid != 0 && !procs.contains(&p.sandbox_pid) {
            procs.push(p.sandbox_pid);
        }
        pod_total += procs
            .into_iter()
            .filter(|q| *q != p.container_pid)
            .map(pss)
            .sum::<u64>();
        ctr_total += pss(p.container_pid);
    }
    let alive_n = pods.len().max(1) as f64;
    let mem_drop =
        mem_before.saturating_sub(husk_sandbox::inspect::mem_available_kib()) as f64 / alive_n;
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for p in &pods {
        let permit = sem.clone().acquire_owned().await?;
        let (e, c, p) = (env.clone(), cri.clone(), p.clone());
        set.spawn(async move {
            let r = unload_one(e, c, p.clone()).await;
            drop(permit);
            r.with_context(|| format!("removing {}", p.id))
        });
    }
    while let Some(j) = set.join_next().await {
        if let Err(e) = j? {
            errors.push(format!("{e:#}"));
        }
    }
    let teardown_secs = t0.elapsed().as_secs_f64();
    let mut left = leaks(env, &pods).await;
    let netns_after = std::fs::read_dir("/run/netns")
        .map(|d| d.count())
        .unwrap_or(0);
    if netns_after > netns_before {
        left.push(format!("netns: {netns_before} before, {netns_after} after"));
    }
    left.extend(errors);
    Ok(Row {
        handler: handler.to_string(),
        load_secs,
        per_pod,
        pss_pod: pod_total as f64 / alive_n,
        pss_container: ctr_total as f64 / alive_n,
        mem_drop,
        teardown_secs,
        leaks: left,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = parse_args()?;
    let env = Env::from_env().context(
        "no private containerd: run scripts/density.sh (or containerd-env.sh up and export its env)",
    )?;
    let cri = connect(&env.socket).await?;
    let mut rows = Vec::new();
    for h in &a.handlers {
        let r = run_handler(&env, &cri, h, &a)
            .await
            .with_context(|| format!("handler {h}"))?;
        println!(
            "{}",
            json!({
                "handler": r.handler, "pods": a.n, "in_flight": a.c,
                "load_seconds": r.load_secs,
                "per_pod_ms_p50": pct(&r.per_pod, 50.0),
                "per_pod_ms_p99": pct(&r.per_pod, 99.0),
                "per_pod_ms_p50_first_tenth": pct(&r.per_pod[..(a.n / 10).max(1)], 50.0),
                "per_pod_ms_p50_last_tenth": pct(&r.per_pod[a.n - (a.n / 10).max(1)..], 50.0),
                "pss_kib_per_pod": r.pss_pod,
                "pss_kib_per_container": r.pss_container,
                "mem_available_drop_kib_per_pod": r.mem_drop,
                "teardown_seconds": r.teardown_secs,
                "leaks": r.leaks,
            })
        );
        rows.push(r);
    }
    println!(
        "\ndensity-cri: {} pods alive at once per handler, one container each, {} in flight, through containerd CRI (netns + CNI)",
        a.n, a.c
    );
    println!(
        "{:<14} {:>9} {:>10} {:>10} {:>11} {:>10} {:>11} {:>10} {:>6}",
        "handler",
        "load s",
        "pod p50",
        "pod p99",
        "PSS/pod",
        "PSS ctr",
        "MemAvail/pod",
        "teardown",
        "leaks"
    );
    for r in &rows {
        println!(
            "{:<14} {:>9.1} {:>7.1} ms {:>7.1} ms {:>7.0} KiB {:>6.0} KiB {:>8.0} KiB {:>8.1} s {:>6}",
            r.handler,
            r.load_secs,
            pct(&r.per_pod, 50.0),
            pct(&r.per_pod, 99.0),
            r.pss_pod,
            r.pss_container,
            r.mem_drop,
            r.teardown_secs,
            r.leaks.len()
        );
    }
    let leaked: Vec<&String> = rows.iter().flat_map(|r| &r.leaks).collect();
    if !leaked.is_empty() {
        bail!("{} leak(s): {leaked:?}", leaked.len());
    }
    Ok(())
}
