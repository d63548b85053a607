//! Removing what a sandbox made, from its record alone.

use super::*;

/// What `reclaim` found of a sandbox: its holder and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reclaimed {
    pub pid: u32,
    /// The recorded exit, if the sandbox was seen to stop.
    pub exit: Option<ExitInfo>,
}

/// The offline clean-up behind `shim delete`: containerd calls it when the
/// serving shim is gone. Kills the holder if it is still the recorded
/// process (pid and start time), removes everything the record names, then
/// the record. `Ok(None)` when there is no record: delete is idempotent.
/// Blocking: for short-lived processes, never on the server's thread.
///
/// A record that cannot be read (damaged on disk, or not one husk wrote
/// for `id`) is not trusted with a single path: [`salvage`] finds the pod
/// from the kernel instead, inside `bundle`.
pub fn reclaim(
    host: &Host,
    store: &StateStore,
    id: &str,
    bundle: &Path,
) -> Result<Option<Reclaimed>> {
    crate::id::validate(id)?;
    let rec = match store.load(id) {
        Ok(Some(rec)) => rec,
        Ok(None) => {
            // No record, but perhaps its directory: a shim killed while
            // writing the first one leaves only `state.json.tmp`.
            store.remove(id)?;
            return Ok(None);
        }
        Err(Error::State { path, source }) if source.kind() == io::ErrorKind::InvalidData => {
            tracing::warn!(path = %path.display(), error = %source, "sandbox record unreadable: salvaging from the kernel");
            salvage(host, id, bundle).map_err(Error::os(id, "salvage"))?;
            store.remove(id)?;
            return Ok(Some(Reclaimed { pid: 0, exit: None }));
        }
        Err(e) => return Err(e),
    };
    let exit = match (rec.phase, rec.exited_at) {
        (Phase::Stopped, Some(at)) => Some(ExitInfo {
            status: rec.exit_status.unwrap_or(UNKNOWN_EXIT),
            at: to_time(at),
        }),
        _ => None,
    };
    if rec.phase.holder_may_live() && host.procs.start_time(rec.pid) == Some(rec.pid_start) {
        host.procs
            .signal(rec.pid, libc::SIGKILL)
            .map_err(Error::os(id, "kill holder"))?;
    }
    teardown(host, &rec).map_err(Error::os(id, "clean up"))?;
    store.remove(id)?;
    Ok(Some(Reclaimed { pid: rec.pid, exit }))
}

/// `teardown` off the server's thread: it sleeps while killed processes
/// drain and while busy cgroup directories come free.
pub(super) async fn teardown_async(host: &Host, rec: &Record) -> std::result::Result<(), OsError> {
    let (host, rec) = (host.clone(), rec.clone());
    tokio::task::spawn_blocking(move || teardown(&host, &rec))
        .await
        .map_err(|e| OsError::sys("teardown", io::Error::other(e.to_string())))?
}

/// Kills what is left of a sandbox and removes everything it made, from
/// its record alone. Blocking (see `teardown_async`).
pub fn teardown(host: &Host, rec: &Record) -> std::result::Result<(), OsError> {
    let mut first_err: Option<OsError> = None;
    let mut keep = |r: std::result::Result<(), OsError>| {
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    };
    keep(host.cgroups.kill_all(&rec.cgroup, libc::SIGKILL));
    let deadline = Instant::now() + KILL_GRACE;
    while host
        .cgroups
        .pids(&rec.cgroup)
        .map(|p| !p.is_empty())
        .unwrap_or(false)
        && Instant::now() < deadline
    {
        let _ = host.cgroups.kill_all(&rec.cgroup, libc::SIGKILL);
        std::thread::sleep(POLL);
    }
    // The leaf first: a record written ahead of a create that was cut
    // short names the cgroup but not yet the directories made for it.
    keep(host.cgroups.remove(&host.cgroups.host_paths(&rec.cgroup)));
    keep(host.cgroups.remove(&rec.cgroup_created));
    for m in rec.mounts.iter().rev() {
        keep(host.mounts.unmount(m));
    }
    for f in rec.files.iter().rev() {
        // Directories are removed only when empty: a mount that failed to
        // come off must never have its contents deleted.
        keep(remove_file(f).or_else(|_| remove_dir(f)));
    }
    first_err.map_or(Ok(()), Err)
}

pub(super) fn remove_file(p: &Path) -> std::result::Result<(), OsError> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OsError::path("remove", p, e)),
    }
}

pub(super) fn remove_dir(p: &Path) -> std::result::Result<(), OsError> {
    match fs::remove_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OsError::path("remove", p, e)),
    }
}

/// Deepest directory levels searched for a pod cgroup under each hierarchy.
const SALVAGE_DEPTH: usize = 8;

/// Cleans up sandbox `id` without its record: its cgroup is the one
/// directory named `id` in the hierarchies (under `/husk` or the pod's
/// `cgroup_parent`), every process in it is killed and the directory
/// removed, with its parents up to `/husk` when they are left empty; every
/// mount under `bundle` is taken off. If more than one cgroup path is named
/// `id` (the same id in two containerd namespaces), none is touched: that
/// is reported, never guessed. Last, the pod files in the bundle go.
pub fn salvage(host: &Host, id: &str, bundle: &Path) -> std::result::Result<(), OsError> {
    let roots = host.cgroups.host_paths(Path::new("/"));
    let mut found: HashSet<PathBuf> = HashSet::new();
    for root in &roots {
        find_named(root, id, SALVAGE_DEPTH, &mut |dir| {
            if let Ok(rel) = dir.strip_prefix(root) {
                found.insert(Path::new("/").join(rel));
            }
        });
    }
    let mut first_err = None;
    match found.len() {
        0 => {}
        1 => {
            let rel = found.iter().next().cloned().unwrap_or_default();
            let _ = host.cgroups.kill_all(&rel, libc::SIGKILL);
            let deadline = Instant::now() + KILL_GRACE;
            while host.cgroups.pids(&rel).is_ok_and(|p| !p.is_empty()) && Instant::now() < deadline
            {
                let _ = host.cgroups.kill_all(&rel, libc::SIGKILL);
                std::thread::sleep(POLL);
            }
            // Outermost first, as `create` returns them: `remove` goes
            // innermost first and keeps a parent that has other children.
            let default_parent = Path::new(cgroup::DEFAULT_PARENT);
            let mut chain: Vec<&Path> = rel
                .ancestors()
                .take_while(|a| rel.starts_with(default_parent) && a.starts_with(default_parent))
                .collect();
            if chain.is_empty() {
                chain.push(&rel);
            }
            let dirs: Vec<PathBuf> = chain
                .into_iter()
                .rev()
                .flat_map(|a| host.cgroups.host_paths(a))
                .collect();
            if let Err(e) = host.cgroups.remove(&dirs) {
                first_err.get_or_insert(e);
            }
        }
        _ => {
            first_err.get_or_insert(OsError::sys(
                "salvage",
                io::Error::other(format!(
                    "{} cgroups are named {id}: {found:?}; none was touched",
                    found.len()
                )),
            ));
        }
    }
    let mut mounts: Vec<String> = crate::inspect::mounts_under(bundle);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        if let Err(e) = host.mounts.unmount(Path::new(&m)) {
            first_err.get_or_insert(e);
        }
    }
    // The pod files `create` writes into the bundle; directories only
    // when empty (a mount that would not come off keeps its contents).
    for f in ["hostname", "hosts", "resolv.conf"] {
        if let Err(e) = remove_file(&bundle.join(f)) {
            first_err.get_or_insert(e);
        }
    }
    for d in ["shm", "rootfs"] {
        let _ = remove_dir(&bundle.join(d));
    }
    first_err.map_or(Ok(()), Err)
}

/// Calls `hit` with every directory named `name` under `dir`, `depth`
/// levels deep at most; symlinks are not followed.
fn find_named(dir: &Path, name: &str, depth: usize, hit: &mut dyn FnMut(&Path)) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = e.path();
        if e.file_name() == name {
            hit(&path);
        } else {
            find_named(&path, name, depth - 1, hit);
        }
    }
}
