//! huskctl: drive husk shims directly over the Sandbox API, no containerd
//! needed. Human tables by default, `--json` for scripts.

mod bench;
mod churn;
mod client;
mod container;
mod demo;
mod load;
mod output;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use husk_sandbox::{Dns, NsMode, PodConfig};
use serde_json::json;

use client::{CreateArgs, Shim};
use output::Out;

#[derive(Parser)]
#[command(
    name = "huskctl",
    version,
    about = "Drive husk sandbox shims over ttrpc"
)]
struct Cli {
    /// containerd namespace the sandboxes live in.
    #[arg(long, global = true, default_value = "husk")]
    namespace: String,
    /// Shim address (unix://…); derived from the namespace and id if omitted.
    #[arg(long, global = true)]
    address: Option<String>,
    /// The shim binary (default: next to huskctl, then $HUSK_SHIM, then PATH).
    #[arg(long, global = true)]
    shim: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct PodArgs {
    /// Sandbox id (default: husk-<pid>-<n>).
    #[arg(long)]
    id: Option<String>,
    /// Bundle directory (default: <run root>/bundles/<ns>/<id>, created).
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Network namespace file to join; a fresh one if omitted.
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Share the host's network (and UTS) namespace.
    #[arg(long)]
    host_network: bool,
    /// Share the host's PID namespace.
    #[arg(long)]
    host_pid: bool,
    /// Share the host's IPC namespace.
    #[arg(long)]
    host_ipc: bool,
    #[arg(long, default_value = "")]
    hostname: String,
    #[arg(long, default_value = "")]
    cgroup_parent: String,
    #[arg(long = "dns-server")]
    dns_servers: Vec<String>,
    #[arg(long = "dns-search")]
    dns_searches: Vec<String>,
    #[arg(long = "dns-option")]
    dns_options: Vec<String>,
    /// name=value, repeatable.
    #[arg(long = "sysctl")]
    sysctls: Vec<String>,
    /// key=value, repeatable.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Read-only bind mount of this directory as the pod's rootfs.
    #[arg(long)]
    rootfs: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Launch a shim and create a sandbox (not started).
    Create(PodArgs),
    /// Start a created sandbox.
    Start { id: String },
    /// create + start.
    Run(PodArgs),
    /// Sandbox status.
    Status {
        id: String,
        #[arg(short, long)]
        verbose: bool,
    },
    /// The platform the sandbox runs containers on.
    Platform { id: String },
    /// Is the sandbox alive?
    Ping { id: String },
    /// cgroup metrics of the sandbox.
    Metrics { id: String },
    /// Stop the sandbox's processes (SIGTERM, then SIGKILL after the timeout).
    Stop {
        id: String,
        #[arg(long, default_value_t = 10)]
        timeout: u32,
    },
    /// Block until the sandbox exits.
    Wait { id: String },
    /// Shut the sandbox down, remove all it made, and run `shim delete`.
    Shutdown { id: String },
    /// List sandboxes with state under this namespace.
    Ls,
    /// Run a container in a pod (Task Create + Start), output to a file.
    RunContainer(container::RunArgs),
    /// Run a command in a running container; prints its output, exits with its code.
    Exec {
        pod: String,
        id: String,
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// A container's output (stdout and stderr).
    Logs { pod: String, id: String },
    /// Signal a container's init (default SIGTERM).
    Kill {
        pod: String,
        id: String,
        #[arg(long, default_value_t = 15)]
        signal: u32,
    },
    /// Wait for a container to exit; prints its exit status.
    WaitContainer { pod: String, id: String },
    /// Kill (if running), delete a container and its bundle.
    RmContainer { pod: String, id: String },
    /// A whole lifecycle, with what the kernel says at each step.
    Demo,
    /// Latency and memory benchmark.
    Bench(bench::BenchArgs),
    /// Sandboxes and containers made and removed many times, with a leak
    /// census; fails on any leak.
    Churn(churn::ChurnArgs),
    /// N sandboxes alive at once: time per pod while loading, memory per
    /// pod at full load, teardown time, leak census; fails on any leak.
    Load(load::LoadArgs),
}

fn kv(list: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    list.iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("{what} {s:?} is not key=value"))
        })
        .collect()
}

fn default_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "husk-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn create_args(ns: &str, p: &PodArgs) -> Result<CreateArgs> {
    let id = p.id.clone().unwrap_or_else(default_id);
    let mode = |host: bool| if host { NsMode::Node } else { NsMode::Pod };
    let dns =
        (!p.dns_servers.is_empty() || !p.dns_searches.is_empty() || !p.dns_options.is_empty())
            .then(|| Dns {
                servers: p.dns_servers.clone(),
                searches: p.dns_searches.clone(),
                options: p.dns_options.clone(),
            });
    Ok(CreateArgs {
        bundle: p
            .bundle
            .clone()
            .unwrap_or_else(|| client::bundle_dir(ns, &id)),
        netns: p.netns.clone(),
        rootfs_bind: p.rootfs.clone(),
        pod: PodConfig {
            name: id.clone(),
            namespace: ns.to_string(),
            uid: id.clone(),
            hostname: p.hostname.clone(),
            dns,
            cgroup_parent: p.cgroup_parent.clone(),
            network: mode(p.host_network),
            pid: mode(p.host_pid),
            ipc: mode(p.host_ipc),
            sysctls: kv(&p.sysctls, "sysctl")?,
            labels: kv(&p.labels, "label")?,
        },
        id,
    })
}

/// Launches a shim for `a.id` and creates the sandbox in it.
async fn launch_and_create(cli: &Cli, a: &CreateArgs) -> Result<Shim> {
    std::fs::create_dir_all(&a.bundle)
        .with_context(|| format!("creating bundle {}", a.bundle.display()))?;
    let shim_bin = client::shim_binary(cli.shim.as_deref());
    let address = client::launch(&shim_bin, &cli.namespace, &a.id, &a.bundle)?;
    let shim = Shim::connect(&address).await?;
    if let Err(e) = client::create(&shim, a).await {
        // Same as containerd: a failed create is followed by shutdown + delete.
        let _ = client::shutdown(&shim, &a.id).await;
        let _ = client::delete(&shim_bin, &cli.namespace, &a.id, &a.bundle);
        return Err(e.context(format!("creating sandbox {}", a.id)));
    }
    Ok(shim)
}

async fn connect(cli: &Cli, id: &str) -> Result<Shim> {
    let addr = client::address_for(&cli.namespace, id, cli.address.as_deref());
    Shim::connect(&addr)
        .await
        .with_context(|| format!("is sandbox {id} running under namespace {}?", cli.namespace))
}

async fn run(cli: Cli) -> Result<()> {
    let out = Out { json: cli.json };
    match &cli.cmd {
        Cmd::Create(p) | Cmd::Run(p) => {
            let a = create_args(&cli.namespace, p)?;
            let shim = launch_and_create(&cli, &a).await?;
            let mut row = json!({"id": a.id, "address": shim.address, "bundle": a.bundle.display().to_string()});
            if matches!(cli.cmd, Cmd::Run(_)) {
                match client::start(&shim, &a.id).await {
                    Ok(pid) => row["pid"] = pid.into(),
                    Err(e) => {
                        let _ = client::shutdown(&shim, &a.id).await;
                        let shim_bin = client::shim_binary(cli.shim.as_deref());
                        let _ = client::delete(&shim_bin, &cli.namespace, &a.id, &a.bundle);
                        return Err(e.context(format!("starting sandbox {}", a.id)));
                    }
                }
            }
            out.record(&row);
        }
        Cmd::Start { id } => {
            let shim = connect(&cli, id).await?;
            let pid = client::start(&shim, id).await?;
            out.record(&json!({"id": id, "pid": pid}));
        }
        Cmd::Status { id, verbose } => {
            let shim = connect(&cli, id).await?;
            let s = client::status(&shim, id, *verbose).await?;
            let mut row = json!({
                "id": s.sandbox_id, "pid": s.pid, "state": s.state,
                "created_at": s.created_at.as_ref().map(|t| client::humantime(husk_shim::convert::from_timestamp(t))),
                "exited_at": s.exited_at.as_ref().map(|t| client::humantime(husk_shim::convert::from_timestamp(t))),
            });
            if *verbose {
                row["info"] = json!(s.info.iter().collect::<BTreeMap<_, _>>());
            }
            out.record(&row);
        }
        Cmd::Platform { id } => {
            let shim = connect(&cli, id).await?;
            let p = client::platform(&shim, id).await?;
            let p = p.platform.as_ref().context("empty platform reply")?;
            out.record(&json!({"os": p.os, "architecture": p.architecture, "variant": p.variant}));
        }
        Cmd::Ping { id } => {
            let shim = connect(&cli, id).await?;
            let t0 = std::time::Instant::now();
            client::ping(&shim, id).await?;
            out.record(
                &json!({"id": id, "alive": true, "rtt_us": t0.elapsed().as_micros() as u64}),
            );
        }
        Cmd::Metrics { id } => {
            let shim = connect(&cli, id).await?;
            out.record(&json!(client::metrics(&shim, id).await?));
        }
        Cmd::Stop { id, timeout } => {
            let shim = connect(&cli, id).await?;
            client::stop(&shim, id, *timeout).await?;
            out.record(&json!({"id": id, "stopped": true}));
        }
        Cmd::Wait { id } => {
            let shim = connect(&cli, id).await?;
            let w = client::wait(&shim, id).await?;
            out.record(&json!({
                "id": id, "exit_status": w.exit_status,
                "exited_at": w.exited_at.as_ref().map(|t| client::humantime(husk_shim::convert::from_timestamp(t))),
            }));
        }
        Cmd::Shutdown { id } => {
            let shim = connect(&cli, id).await?;
            client::shutdown(&shim, id).await?;
            drop(shim);
            let bundle = client::bundle_dir(&cli.namespace, id);
            let shim_bin = client::shim_binary(cli.shim.as_deref());
            client::delete(&shim_bin, &cli.namespace, id, &bundle)?;
            let _ = std::fs::remove_dir_all(&bundle);
            out.record(&json!({"id": id, "shutdown": true}));
        }
        Cmd::Ls => {
            let store = husk_sandbox::StateStore::new(husk_shim::paths::state_root(&cli.namespace));
            let mut rows = Vec::new();
            for id in store.list() {
                let row = match store.load(&id) {
                    Ok(Some(r)) => json!({"id": id, "phase": r.phase.name(), "pid": r.pid,
                        "created_at": client::humantime(husk_sandbox::state::to_time(r.created_at)),
                        "bundle": r.bundle.display().to_string()}),
                    _ => json!({"id": id, "phase": "unreadable"}),
                };
                rows.push(row);
            }
            out.table(&["id", "phase", "pid", "created_at", "bundle"], &rows);
        }
        Cmd::RunContainer(a) => {
            let shim = connect(&cli, &a.pod).await?;
            let (pid, bundle) = container::run(&shim, &cli.namespace, a).await?;
            let mut row = json!({"pod": a.pod, "id": a.id, "pid": pid,
                "bundle": bundle.display().to_string(),
                "log": container::log_file(&bundle).display().to_string()});
            if a.wait {
                row["exit_status"] = container::wait(&shim, &a.id, "").await?.into();
            }
            out.record(&row);
        }
        Cmd::Exec { pod, id, args } => {
            let shim = connect(&cli, pod).await?;
            let (code, stdout, stderr) =
                container::exec(&shim, &cli.namespace, pod, id, args).await?;
            use std::io::Write;
            std::io::stdout().write_all(&stdout)?;
            std::io::stderr().write_all(&stderr)?;
            if code != 0 {
                std::process::exit(i32::try_from(code).unwrap_or(255));
            }
        }
        Cmd::Logs { pod, id } => {
            let f = container::log_file(&container::bundle(&cli.namespace, pod, id));
            let text = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
            use std::io::Write;
            std::io::stdout().write_all(&text)?;
        }
        Cmd::Kill { pod, id, signal } => {
            let shim = connect(&cli, pod).await?;
            container::kill(&shim, id, *signal).await?;
            out.record(&json!({"id": id, "signal": signal}));
        }
        Cmd::WaitContainer { pod, id } => {
            let shim = connect(&cli, pod).await?;
            let status = container::wait(&shim, id, "").await?;
            out.record(&json!({"id": id, "exit_status": status}));
        }
        Cmd::RmContainer { pod, id } => {
            let shim = connect(&cli, pod).await?;
            let status = container::remove(&shim, &cli.namespace, pod, id).await?;
            out.record(&json!({"id": id, "removed": true, "exit_status": status}));
        }
        Cmd::Demo => demo::run(&cli.namespace, client::shim_binary(cli.shim.as_deref())).await?,
        Cmd::Churn(a) => {
            churn::run(
                &cli.namespace,
                client::shim_binary(cli.shim.as_deref()),
                a,
                &out,
            )
            .await?
        }
        Cmd::Load(a) => {
            load::run(
                &cli.namespace,
                client::shim_binary(cli.shim.as_deref()),
                a,
                &out,
            )
            .await?
        }
        Cmd::Bench(b) => {
            bench::run(
                &cli.namespace,
                client::shim_binary(cli.shim.as_deref()),
                b,
                &out,
            )
            .await?
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("huskctl: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Run as a spawned task: on a current-thread runtime, wake-ups of the
    // block_on future cost a thread unpark each, which triples RPC latency.
    let result = rt.block_on(async { tokio::spawn(run(cli)).await });
    match result.map_err(anyhow::Error::from).and_then(|r| r) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("huskctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
