//! `huskctl demo`: one sandbox from launch to cleanup, with what the
//! kernel says at each step, and a final check that nothing is left.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use husk_sandbox::inspect::{alive, mounts_under};
use husk_sandbox::{Dns, NsMode, PodConfig};
use husk_shim::paths;

use crate::client::{self, CreateArgs, Shim};
use crate::container;

fn step(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

fn ns_link(pid: &str, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn hostname_in(pid: u32) -> String {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-u", "hostname"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "(nsenter unavailable)".into())
}

/// What a container left on the host while it ran, checked at the end.
struct ContainerTraces {
    id: String,
    pids: Vec<u32>,
    cgroup: Option<PathBuf>,
    runtime_state: PathBuf,
    rootfs: PathBuf,
}

impl ContainerTraces {
    fn leaks(&self) -> Vec<String> {
        let mut l = Vec::new();
        for p in self.pids.iter().filter(|p| alive(**p)) {
            l.push(format!("container {} process {p} alive", self.id));
        }
        if let Some(cg) = self.cgroup.as_ref().filter(|d| d.exists()) {
            l.push(format!("container cgroup {}", cg.display()));
        }
        if self.runtime_state.exists() {
            l.push(format!("runtime state {}", self.runtime_state.display()));
        }
        if self.rootfs.exists() {
            l.push(format!("container rootfs {}", self.rootfs.display()));
        }
        l
    }
}

/// Steps 5 and 6: a container in the pod, through the Task service.
async fn container_steps(ns: &str, shim: &Shim, pod: &str, holder: u32) -> Result<ContainerTraces> {
    step(
        5,
        "a container in the pod: Task Create + Start (husk's own runtime), Exec",
    );
    let a = container::RunArgs {
        pod: pod.to_string(),
        id: "hello".into(),
        rootfs: None,
        memory: Some(64 << 20),
        stdout: None,
        share_pid: false,
        wait: false,
        args: vec![
            "sh".into(),
            "-c".into(),
            "echo hello from a husk container; cat /etc/hostname; sleep 30 & wait".into(),
        ],
    };
    let t0 = Instant::now();
    let (cpid, bundle) = container::run(shim, ns, &a).await?;
    println!(
        "container {} pid {cpid} created and started in {:.2} ms",
        a.id,
        t0.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "{:<5} {:<24} {:<24} same-as-holder",
        "ns", "container", "holder"
    );
    for n in ["net", "ipc", "uts", "pid", "mnt"] {
        let c = ns_link(&cpid.to_string(), n);
        let h = ns_link(&holder.to_string(), n);
        println!("{n:<5} {c:<24} {h:<24} {}", c == h);
    }
    let cgroup = memory_cgroup_of(cpid);
    if let Some(cg) = &cgroup {
        let limit = fs::read_to_string(cg.join("memory.limit_in_bytes")).unwrap_or_default();
        println!("cgroup    {} (memory limit {})", cg.display(), limit.trim());
    }
    let t0 = Instant::now();
    let (code, out, _) = container::exec(shim, ns, pod, &a.id, &["id".into()]).await?;
    println!(
        "exec id   -> {} (exit {code}, {:.2} ms)",
        String::from_utf8_lossy(&out).trim(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    let mut pids = vec![cpid];
    pids.extend(husk_sandbox::inspect::children(cpid));
    step(6, "the container's output, Kill, Wait, Delete");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let log = fs::read_to_string(container::log_file(&bundle)).unwrap_or_default();
    println!(
        "--- {}\n{}",
        container::log_file(&bundle).display(),
        log.trim_end()
    );
    container::kill(shim, &a.id, libc::SIGKILL as u32).await?;
    let status = container::wait(shim, &a.id, "").await?;
    println!("exit status {status} (SIGKILL: 128 + 9)");
    container::remove(shim, ns, pod, &a.id).await?;
    println!("deleted; bundle {} removed", bundle.display());
    Ok(ContainerTraces {
        id: a.id.clone(),
        pids,
        cgroup,
        runtime_state: paths::runtime_root(ns).join(&a.id),
        rootfs: bundle.join("rootfs"),
    })
}

/// The v1 memory cgroup directory of a process (from /proc/<pid>/cgroup).
fn memory_cgroup_of(pid: u32) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v2 = !text.lines().any(|l| l.contains(":memory:"));
    let rel = husk_task::spec::proc_cgroup(&text, v2)?;
    let root = if v2 {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup/memory"
    };
    Some(PathBuf::from(root).join(rel.strip_prefix("/").ok()?))
}

/// If a step fails, `shim delete` (as containerd runs it for a pod whose
/// shim it gives up on) takes down the shim, the holder, the containers
/// and everything they made: a failed demo leaves nothing either.
struct Reclaim<'a> {
    shim_bin: &'a Path,
    ns: &'a str,
    id: &'a str,
    bundle: &'a Path,
    armed: bool,
}

impl Drop for Reclaim<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        eprintln!("demo failed: reclaiming sandbox {}", self.id);
        if let Err(e) = client::delete(self.shim_bin, self.ns, self.id, self.bundle) {
            eprintln!("reclaim: {e:#}");
        }
        let _ = fs::remove_dir_all(self.bundle);
    }
}

pub async fn run(ns: &str, shim_bin: PathBuf) -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("the demo creates real namespaces, cgroups and mounts: run it as root");
    }
    let id = format!("demo-{}", std::process::id());
    let bundle = client::bundle_dir(ns, &id);
    fs::create_dir_all(&bundle)?;
    let a = CreateArgs {
        id: id.clone(),
        bundle: bundle.clone(),
        netns: None,
        rootfs_bind: None,
        pod: PodConfig {
            name: "demo".into(),
            namespace: "default".into(),
            uid: id.clone(),
            hostname: "husk-demo".into(),
            dns: Some(Dns {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            sysctls: [(
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            )]
            .into(),
            labels: [("app".to_string(), "demo".to_string())].into(),
            network: NsMode::Pod,
            pid: NsMode::Pod,
            ipc: NsMode::Pod,
            ..Default::default()
        },
    };
    println!(
        "husk demo: sandbox {id}, namespace {ns}, shim {}",
        shim_bin.display()
    );

    step(1, "launch the shim as containerd does (`start`)");
    let t0 = Instant::now();
    let mut reclaim = Reclaim {
        shim_bin: &shim_bin,
        ns,
        id: &id,
        bundle: &bundle,
        armed: true,
    };
    let address = client::launch(&shim_bin, ns, &id, &bundle)?;
    println!(
        "address   {address}  ({:.2} ms)",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let sock = paths::socket_path(ns, &id);
    let mode = fs::metadata(&sock)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)?;
    println!("socket    {} mode {mode:o}", sock.display());
    let shim = Shim::connect(&address).await?;

    step(2, "CreateSandbox: cgroup, pod files, /dev/shm");
    let t0 = Instant::now();
    client::create(&shim, &a).await?;
    println!("created in {:.2} ms", t0.elapsed().as_secs_f64() * 1e3);
    for f in ["hostname", "hosts", "resolv.conf"] {
        let text = fs::read_to_string(bundle.join(f)).unwrap_or_default();
        println!("--- {}/{f}\n{}", bundle.display(), text.trim_end());
    }
    println!("mounts    {:?}", mounts_under(&bundle));

    step(3, "StartSandbox: the pod holder");
    let t0 = Instant::now();
    let pid = client::start(&shim, &id).await?;
    println!(
        "holder pid {pid} started in {:.2} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    println!("{:<5} {:<24} {:<24} same-as-host", "ns", "holder", "host");
    for n in ["net", "ipc", "uts", "pid", "mnt"] {
        let h = ns_link(&pid.to_string(), n);
        let me = ns_link("self", n);
        println!("{n:<5} {h:<24} {me:<24} {}", h == me);
    }
    println!("hostname in pod  {}", hostname_in(pid));
    println!("/proc/{pid}/cgroup:");
    for l in fs::read_to_string(format!("/proc/{pid}/cgroup"))?
        .lines()
        .filter(|l| l.contains(&id))
    {
        println!("  {l}");
    }

    step(4, "SandboxStatus (verbose), Platform, Ping, SandboxMetrics");
    let st = client::status(&shim, &id, true).await?;
    println!("state     {}  pid {}", st.state, st.pid);
    for (k, v) in st.info.iter().collect::<std::collections::BTreeMap<_, _>>() {
        println!("  {k:<15} {v}");
    }
    let cgroup_paths: Vec<PathBuf> = st
        .info
        .get("cgroup_paths")
        .map(|s| s.split(',').map(PathBuf::from).collect())
        .unwrap_or_default();
    let p = client::platform(&shim, &id).await?;
    if let Some(p) = p.platform.as_ref() {
        println!(
            "platform  {}/{}{}",
            p.os,
            p.architecture,
            if p.variant.is_empty() {
                String::new()
            } else {
                format!("/{}", p.variant)
            }
        );
    }
    let t0 = Instant::now();
    client::ping(&shim, &id).await?;
    println!("ping      ok in {} µs", t0.elapsed().as_micros());
    for (k, v) in client::metrics(&shim, &id).await? {
        println!("  {k:<20} {v}");
    }

    let c = container_steps(ns, &shim, &id, pid).await?;

    step(7, "StopSandbox (SIGTERM, 5 s grace), then WaitSandbox");
    let t0 = Instant::now();
    client::stop(&shim, &id, 5).await?;
    println!("stopped in {:.2} ms", t0.elapsed().as_secs_f64() * 1e3);
    let w = client::wait(&shim, &id).await?;
    let at = w
        .exited_at
        .as_ref()
        .map(|t| client::humantime(husk_shim::convert::from_timestamp(t)));
    println!(
        "exit status {} at {}",
        w.exit_status,
        at.unwrap_or_default()
    );
    let st = client::status(&shim, &id, false).await?;
    println!("state     {}", st.state);

    step(8, "ShutdownSandbox, then `shim delete` as containerd does");
    client::shutdown(&shim, &id).await?;
    drop(shim);
    client::delete(&shim_bin, ns, &id, &bundle)?;
    reclaim.armed = false;
    println!("shutdown and delete done");

    step(9, "what is left behind");
    let mut leaks = c.leaks();
    if alive(pid) {
        leaks.push(format!("holder pid {pid} still alive"));
    }
    for d in &cgroup_paths {
        if d.exists() {
            leaks.push(format!("cgroup {} still exists", d.display()));
        }
    }
    for m in mounts_under(&bundle) {
        leaks.push(format!("mount {m}"));
    }
    for f in ["hostname", "hosts", "resolv.conf", "shm"] {
        if bundle.join(f).exists() {
            leaks.push(format!("pod file {}", bundle.join(f).display()));
        }
    }
    if paths::state_root(ns).join(&id).exists() {
        leaks.push("state directory".into());
    }
    // The server lingers briefly for containerd to hang up, then removes its socket.
    let t0 = Instant::now();
    while sock.exists() && t0.elapsed().as_secs() < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if sock.exists() {
        leaks.push(format!("socket {}", sock.display()));
    }
    let _ = fs::remove_file(bundle.join("address"));
    fs::remove_dir(&bundle).with_context(|| format!("bundle {} not empty", bundle.display()))?;
    println!(
        "holder process   {}",
        if alive(pid) { "ALIVE" } else { "gone" }
    );
    println!(
        "cgroup dirs      {}",
        if cgroup_paths.iter().any(|d| d.exists()) {
            "LEFT"
        } else {
            "gone"
        }
    );
    println!(
        "mounts           {}",
        if mounts_under(&bundle).is_empty() {
            "gone"
        } else {
            "LEFT"
        }
    );
    println!(
        "socket           {}",
        if sock.exists() { "LEFT" } else { "gone" }
    );
    println!(
        "container        {}",
        if c.leaks().is_empty() {
            "gone (process, cgroup, runtime state, mounts)"
        } else {
            "LEFT"
        }
    );
    if leaks.is_empty() {
        println!("\nnothing left behind: demo passed");
        Ok(())
    } else {
        bail!("leaks: {}", leaks.join("; "))
    }
}
