//! soak-cri: churn through containerd's CRI on handler `husk`, with the
//! leak checks of the e2e suite. Fails on any leak.
//!
//! 1. One long-lived pod: E ExecSync calls in a running container, then M
//!    container create/start/stop/remove cycles; its shim's RSS and fd
//!    count at the end must be within 10% of their values after the first
//!    100 operations.
//! 2. P pods, each with a container, created and removed, C in flight;
//!    afterwards every pod's shim, holder, cgroups, mounts, netns, state
//!    and bundle are gone (`HuskPod::assert_gone`).
//!
//! usage: soak-cri [--execs E] [--container-cycles M] [--pods P] [-c C]
//! Needs the private containerd (`scripts/containerd-env.sh up`) and its
//! env; `scripts/soak.sh --cri` does both.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use husk_e2e::*;
use serde_json::json;

struct Args {
    execs: usize,
    container_cycles: usize,
    pods: usize,
    concurrency: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        execs: 2000,
        container_cycles: 500,
        pods: 500,
        concurrency: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut num = |what: &str| -> Result<usize> {
            Ok(it
                .next()
                .with_context(|| format!("{what} needs a number"))?
                .parse()?)
        };
        match x.as_str() {
            "--execs" => a.execs = num("--execs")?,
            "--container-cycles" => a.container_cycles = num("--container-cycles")?,
            "--pods" => a.pods = num("--pods")?,
            "-c" => a.concurrency = num("-c")?,
            other => bail!("unknown argument {other}; usage: soak-cri [--execs E] [--container-cycles M] [--pods P] [-c C]"),
        }
    }
    if a.concurrency == 0 {
        bail!("-c must be at least 1");
    }
    Ok(a)
}

async fn long_lived_pod(env: &Env, cri: &mut Cri, a: &Args) -> Result<Vec<String>> {
    let tag = std::process::id();
    let uid = format!("soak{tag}-long");
    let cfg = pod_config(env, "soak-long", &uid, false);
    let pod = run_pod(cri, cfg.clone(), "husk").await?;
    let (_, info) = pod_status(cri, &pod).await?;
    let hp = HuskPod::from_info(&pod, &info)?;
    let shim = husk_shim_pid(&pod).context("the pod's shim")?;
    let steady = run_container(
        cri,
        &pod,
        &cfg,
        container_config(env, "steady", "exec sleep 100000"),
    )
    .await?;
    let mut problems = Vec::new();
    let mut early = None;
    let mut ops = 0usize;
    let t0 = Instant::now();
    for _ in 0..a.execs {
        let (code, _, _) = exec_sync(cri, &steady, &["true"], 10).await?;
        if code != 0 {
            bail!("ExecSync exited {code}");
        }
        ops += 1;
        if ops == 100 {
            early = Some(husk_sandbox::inspect::fds_and_rss_kib(shim));
        }
    }
    let exec_secs = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for i in 0..a.container_cycles {
        let c = run_container(
            cri,
            &pod,
            &cfg,
            container_config(env, &format!("c{i}"), "exec sleep 1000"),
        )
        .await?;
        stop_container(cri, &c, 0).await?;
        remove_container(cri, &c).await?;
        ops += 1;
        if ops == 100 {
            early = Some(husk_sandbox::inspect::fds_and_rss_kib(shim));
        }
    }
    let cycle_secs = t0.elapsed().as_secs_f64();
    // The shim trims its heap half a second after the last request.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let end = husk_sandbox::inspect::fds_and_rss_kib(shim);
    let early = early.unwrap_or(end);
    if end.0 > early.0 + early.0 / 10 {
        problems.push(format!("long-lived shim fds {} -> {}", early.0, end.0));
    }
    if end.1 > early.1 + early.1 / 10 {
        problems.push(format!("long-lived shim RSS {} -> {} KiB", early.1, end.1));
    }
    println!(
        "{}",
        json!({"phase": "long-lived pod (CRI)", "execs": a.execs, "exec_seconds": exec_secs,
               "container_cycles": a.container_cycles, "cycle_seconds": cycle_secs,
               "shim_fds_after_100": early.0, "shim_rss_kib_after_100": early.1,
               "shim_fds_end": end.0, "shim_rss_kib_end": end.1})
    );
    stop_container(cri, &steady, 0).await?;
    remove_container(cri, &steady).await?;
    stop_pod(cri, &pod).await?;
    remove_pod(cri, &pod).await?;
    if let Err(e) = hp.assert_gone().await {
        problems.push(format!("long-lived pod: {e:#}"));
    }
    Ok(problems)
}

/// One pod with a container, made and removed; then checked gone.
async fn pod_cycle(env: Env, i: usize) -> Result<()> {
    let mut cri = connect(&env.socket).await?;
    let uid = format!("soak{}-p{i}", std::process::id());
    let cfg = pod_config(&env, &format!("soak{i}"), &uid, false);
    let pod = run_pod(&mut cri, cfg.clone(), "husk").await?;
    let (_, info) = pod_status(&mut cri, &pod).await?;
    let hp = HuskPod::from_info(&pod, &info)?;
    let c = run_container(
        &mut cri,
        &pod,
        &cfg,
        container_config(&env, "app", "exec sleep 1000"),
    )
    .await?;
    stop_container(&mut cri, &c, 0).await?;
    remove_container(&mut cri, &c).await?;
    stop_pod(&mut cri, &pod).await?;
    remove_pod(&mut cri, &pod).await?;
    hp.assert_gone().await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = parse_args()?;
    let env = Env::from_env().context("no private containerd: run scripts/soak.sh --cri (or containerd-env.sh up and export its env)")?;
    let mut cri = connect(&env.socket).await?;
    let mut problems = long_lived_pod(&env, &mut cri, &a).await?;
    let t0 = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..a.pods {
        let permit = sem.clone().acquire_owned().await?;
        let env = env.clone();
        set.spawn(async move {
            let r = pod_cycle(env, i).await;
            drop(permit);
            (i, r)
        });
    }
    let mut failed = 0;
    while let Some(j) = set.join_next().await {
        let (i, r) = j?;
        if let Err(e) = r {
            failed += 1;
            problems.push(format!("pod {i}: {e:#}"));
        }
    }
    let left = cgroup_dirs(&env, &format!("soak{}", std::process::id()));
    if !left.is_empty() {
        problems.push(format!("{} pod cgroups left", left.len()));
    }
    println!(
        "{}",
        json!({"phase": "pods with a container (CRI)", "pods": a.pods, "concurrency": a.concurrency,
               "seconds": t0.elapsed().as_secs_f64(), "failed": failed, "leaks": problems})
    );
    if !problems.is_empty() {
        bail!(
            "soak-cri found {} problem(s): {}",
            problems.len(),
            problems.join("; ")
        );
    }
    Ok(())
}
