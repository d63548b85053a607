//! bench-pods: pods through containerd's CRI, side by side in one run, on
//! handlers `husk` (sandboxer = shim, husk's own runtime), `husk-runc` (the
//! same shim with runc) and the default `runc` handler
//! (containerd's Go shim plus a pause container).
//!
//! Each pod runs one container (`sleep`): CreateContainer+StartContainer,
//! ExecSync (`true`, 3 per pod) and StopContainer+RemoveContainer are
//! timed as well, and PSS is split into what the pod costs (shim, holder
//! or pause) and the container's own processes.
//!
//! usage: bench-pods [-n PODS] [--pss-pods K] [--json]
//! Needs the private containerd (`scripts/containerd-env.sh up`) and its
//! env; `scripts/bench-pods.sh` does both.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use husk_e2e::*;
use serde_json::json;

struct Args {
    n: usize,
    pss_pods: usize,
    json: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        n: 20,
        pss_pods: 10,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "-n" => a.n = it.next().context("-n needs a number")?.parse()?,
            "--pss-pods" => a.pss_pods = it.next().context("--pss-pods needs a number")?.parse()?,
            "--json" => a.json = true,
            other => bail!(
                "unknown argument {other}; usage: bench-pods [-n PODS] [--pss-pods K] [--json]"
            ),
        }
    }
    if a.n == 0 || a.pss_pods == 0 {
        bail!("-n and --pss-pods must be at least 1");
    }
    Ok(a)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// Every process a pod costs: its shim (argv names the sandbox id), and
/// the sandbox's processes (the husk holder, or the pause container and
/// anything in its pid namespace), as found in the pod's cgroup.
fn pod_processes(id: &str, sandbox_pid: u32) -> Vec<u32> {
    let mut pids: Vec<u32> = processes_mentioning(id)
        .into_iter()
        .filter(|p| cmdline(*p).contains("containerd-shim"))
        .collect();
    if sandbox_pid != 0 && !pids.contains(&sandbox_pid) {
        pids.push(sandbox_pid);
    }
    pids
}

fn sandbox_pid(handler: &str, id: &str, info: &serde_json::Value) -> u32 {
    if handler.starts_with("husk") {
        return HuskPod::from_info(id, info).map(|p| p.holder).unwrap_or(0);
    }
    info.get("pid").and_then(|v| v.as_u64()).unwrap_or(0) as u32
}

#[derive(Default)]
struct Side {
    run: Vec<f64>,
    stop_remove: Vec<f64>,
    ctr_start: Vec<f64>,
    exec: Vec<f64>,
    ctr_stop_remove: Vec<f64>,
    pss_per_pod: f64,
    pss_container: f64,
}

/// Runs the bench container in a pod; returns (container id, its pid).
async fn bench_container(
    env: &Env,
    cri: &mut Cri,
    pod: &str,
    cfg: &k8s_cri::v1::PodSandboxConfig,
) -> Result<(String, u32)> {
    let c = run_container(
        cri,
        pod,
        cfg,
        container_config(env, "app", "exec sleep 100000"),
    )
    .await?;
    let (_, info) = container_status(cri, &c).await?;
    Ok((c, info["pid"].as_u64().unwrap_or(0) as u32))
}

/// A warm-up pod, not counted: first-use costs (image lookup, caches).
async fn warm_up(env: &Env, cri: &mut Cri, handler: &str) -> Result<()> {
    let uid = format!("{}-{handler}-warm", std::process::id());
    let cfg = pod_config(env, "warm", &uid, false);
    let id = run_pod(cri, cfg.clone(), handler).await?;
    bench_container(env, cri, &id, &cfg).await?;
    stop_pod(cri, &id).await?;
    remove_pod(cri, &id).await?;
    remove_pod_cgroup(env, &uid);
    Ok(())
}

/// Pod `i` on `handler`, timed into `side`.
async fn one_pod(env: &Env, cri: &mut Cri, handler: &str, i: usize, side: &mut Side) -> Result<()> {
    let uid = format!("{}-{handler}-{i}", std::process::id());
    let cfg = pod_config(env, &format!("bench{i}"), &uid, false);
    let t0 = Instant::now();
    let id = run_pod(cri, cfg.clone(), handler).await?;
    side.run.push(t0.elapsed().as_secs_f64() * 1e3);
    let t0 = Instant::now();
    let (c, _) = bench_container(env, cri, &id, &cfg).await?;
    side.ctr_start.push(t0.elapsed().as_secs_f64() * 1e3);
    for _ in 0..3 {
        let t0 = Instant::now();
        let (code, _, _) = exec_sync(cri, &c, &["true"], 10).await?;
        side.exec.push(t0.elapsed().as_secs_f64() * 1e3);
        if code != 0 {
            bail!("ExecSync true exited {code}");
        }
    }
    let t0 = Instant::now();
    stop_container(cri, &c, 0).await?;
    remove_container(cri, &c).await?;
    side.ctr_stop_remove.push(t0.elapsed().as_secs_f64() * 1e3);
    let t0 = Instant::now();
    stop_pod(cri, &id).await?;
    remove_pod(cri, &id).await?;
    side.stop_remove.push(t0.elapsed().as_secs_f64() * 1e3);
    remove_pod_cgroup(env, &uid);
    Ok(())
}

/// K pods alive at once on `handler`: PSS into `side`.
async fn memory(env: &Env, cri: &mut Cri, handler: &str, a: &Args, side: &mut Side) -> Result<()> {
    let tag = std::process::id();
    // Memory: K pods alive at once.
    let mut alive = Vec::new();
    for i in 0..a.pss_pods {
        let cfg = pod_config(
            env,
            &format!("mem{i}"),
            &format!("{tag}-{handler}-m{i}"),
            false,
        );
        let id = run_pod(cri, cfg.clone(), handler).await?;
        let (_, info) = pod_status(cri, &id).await?;
        let sp = sandbox_pid(handler, &id, &info);
        let (_, cpid) = bench_container(env, cri, &id, &cfg).await?;
        alive.push((id, sp, cpid, format!("{tag}-{handler}-m{i}")));
    }
    let pss = |p: u32| husk_sandbox::inspect::pss_kib(p).unwrap_or(0);
    let (mut total, mut ctr_total) = (0u64, 0u64);
    for (id, sp, cpid, _) in &alive {
        total += pod_processes(id, *sp)
            .into_iter()
            .filter(|p| p != cpid)
            .map(pss)
            .sum::<u64>();
        ctr_total += pss(*cpid);
    }
    for (id, _, _, uid) in &alive {
        stop_pod(cri, id).await?;
        remove_pod(cri, id).await?;
        remove_pod_cgroup(env, uid);
    }
    side.pss_per_pod = total as f64 / alive.len() as f64;
    side.pss_container = ctr_total as f64 / alive.len() as f64;
    Ok(())
}

/// The handlers measured, in order: husk's default (its own runtime),
/// husk with runc, and containerd's Go shim with runc and pause.
const HANDLERS: [(&str, &str); 3] = [
    ("husk", "husk"),
    ("husk-runc", "husk+runc"),
    ("runc", "Go+runc"),
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = parse_args()?;
    let env = Env::from_env().context("no private containerd: run scripts/bench-pods.sh (or containerd-env.sh up and export its env)")?;
    let mut cri = connect(&env.socket).await?;
    // Pod i runs on every handler before pod i + 1 on any: the VM's drift
    // over a run lands on all three columns alike.
    let mut sides: Vec<Side> = HANDLERS.iter().map(|_| Side::default()).collect();
    for (handler, _) in HANDLERS {
        warm_up(&env, &mut cri, handler)
            .await
            .with_context(|| format!("{handler} warm-up"))?;
    }
    for i in 0..a.n {
        for (h, (handler, _)) in HANDLERS.iter().enumerate() {
            one_pod(&env, &mut cri, handler, i, &mut sides[h])
                .await
                .with_context(|| format!("{handler} pod {i}"))?;
        }
    }
    for (h, (handler, _)) in HANDLERS.iter().enumerate() {
        memory(&env, &mut cri, handler, &a, &mut sides[h])
            .await
            .with_context(|| format!("{handler} pods for PSS"))?;
    }
    let mut rows: Vec<(String, [f64; 3], &str)> = Vec::new();
    let mut series = |name: &str, pick: fn(&mut Side) -> &mut Vec<f64>| {
        for p in [50.0, 99.0] {
            let mut v = [0.0; 3];
            for (i, s) in sides.iter_mut().enumerate() {
                v[i] = pct(pick(s), p);
            }
            rows.push((format!("{name} p{p}"), v, "ms"));
        }
    };
    series("RunPodSandbox", |s| &mut s.run);
    series("Stop+RemovePod", |s| &mut s.stop_remove);
    series("Create+StartContainer", |s| &mut s.ctr_start);
    series("ExecSync", |s| &mut s.exec);
    series("Stop+RemoveContainer", |s| &mut s.ctr_stop_remove);
    let per = |f: fn(&Side) -> f64| [f(&sides[0]), f(&sides[1]), f(&sides[2])];
    rows.push(("PSS per pod".into(), per(|s| s.pss_per_pod), "KiB"));
    rows.push((
        "PSS container procs".into(),
        per(|s| s.pss_container),
        "KiB",
    ));
    if a.json {
        let rows: BTreeMap<_, _> = rows
            .iter()
            .map(|(name, v, unit)| {
                (
                    name.clone(),
                    json!({"husk": v[0], "husk_runc": v[1], "go": v[2],
                           "ratio": v[0] / v[2], "ratio_runc": v[1] / v[2], "unit": unit}),
                )
            })
            .collect();
        println!(
            "{}",
            json!({"pods": a.n, "pss_pods": a.pss_pods, "rows": rows})
        );
        return Ok(());
    }
    println!(
        "bench-pods: {} pods with one container each, per handler, through containerd CRI (netns + CNI), {} alive for PSS (pod: shim + holder or pause; container processes apart)",
        a.n, a.pss_pods
    );
    println!(
        "{:<28} {:>12} {:>12} {:>12} {:>9} {:>12}",
        "", HANDLERS[0].1, HANDLERS[1].1, HANDLERS[2].1, "husk/Go", "husk+runc/Go"
    );
    for (name, v, unit) in &rows {
        println!(
            "{:<28} {:>8.2} {:<3}{:>8.2} {:<3}{:>8.2} {:<3}{:>9.3} {:>12.3}",
            name,
            v[0],
            unit,
            v[1],
            unit,
            v[2],
            unit,
            v[0] / v[2],
            v[1] / v[2]
        );
    }
    Ok(())
}
