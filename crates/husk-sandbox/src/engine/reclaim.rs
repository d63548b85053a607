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
pub fn reclaim(host: &Host, store: &StateStore, id: &str) -> Result<Option<Reclaimed>> {
    crate::id::validate(id)?;
    let Some(rec) = store.load(id)? else {
        return Ok(None);
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
