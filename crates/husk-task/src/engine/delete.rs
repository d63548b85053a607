//! Delete (a stopped init or exec), removing every container when the pod
//! shuts down, and the offline clean-up behind `shim delete`.

use serde::{Deserialize, Serialize};

use super::*;

/// The file in a container's bundle that lets `shim delete` clean up
/// after a dead shim: which runtime holds the container, and the mounts.
pub const TASK_RECORD: &str = "husk-task.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub binary: String,
    pub root: Option<PathBuf>,
    pub systemd_cgroup: bool,
    pub mounts: Vec<PathBuf>,
    /// The container's cgroup, when known: what `shim delete` kills and
    /// removes itself if the runtime cannot be run any more.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
}

impl TaskRecord {
    pub(crate) fn save(&self, bundle: &Path) -> Result<()> {
        self.save_as(&bundle.join(TASK_RECORD))
    }

    /// Writes the record to `path` atomically (temp file, rename). The
    /// temp file's name starts with a dot, which no id does: a reader of
    /// the registry tells a half-written record (the shim was killed
    /// between write and rename) from a container's.
    pub(crate) fn save_as(&self, path: &Path) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let data = serde_json::to_vec(self).map_err(|e| Error::invalid(e.to_string()))?;
        std::fs::write(&tmp, data)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
    }

    fn load(path: &Path) -> Result<Option<TaskRecord>> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::invalid(format!("{}: {e}", path.display()))),
        }
    }

    /// Force-deletes the container in its runtime and takes its rootfs
    /// off. Blocking: short-lived processes only.
    fn reclaim(&self, host: &Host, default_root: &Path) -> Result<()> {
        husk_sandbox::id::validate(&self.id)?;
        let root = self
            .root
            .clone()
            .unwrap_or_else(|| default_root.to_path_buf());
        if self.binary == crate::runtime::native::NAME {
            crate::runtime::native::reclaim(&root, &self.id, &*host.cgroups)
                .map_err(|e| Error::invalid(format!("reclaim {}: {e}", self.id)))?;
        } else if !self.runtime_delete(&root) {
            // The runtime is gone or failed: do its clean-up without it.
            if let Some(cg) = &self.cgroup {
                kill_and_remove_cgroup(host, cg).map_err(Error::os(&self.id, "remove cgroup"))?;
            }
            let _ = std::fs::remove_dir_all(root.join(&self.id));
        }
        for m in self.mounts.iter().rev() {
            host.mounts
                .unmount(m)
                .map_err(Error::os(&self.id, "unmount rootfs"))?;
        }
        Ok(())
    }

    /// `<binary> delete --force`: the runtime's own clean-up. Whether it
    /// ran and succeeded.
    fn runtime_delete(&self, root: &Path) -> bool {
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.arg("--root").arg(root);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        let out = cmd
            .args(["delete", "--force", &self.id])
            .stdin(std::process::Stdio::null())
            .output();
        match &out {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                tracing::debug!(id = %self.id, stderr = %String::from_utf8_lossy(&o.stderr), "runtime delete");
                false
            }
            Err(e) => {
                tracing::warn!(id = %self.id, error = %e, binary = %self.binary, "runtime cannot be run");
                false
            }
        }
    }
}

/// Kills every process in cgroup `cg` and removes it, in every hierarchy
/// (with runc's unified-hierarchy twin on a hybrid host): what the
/// runtime's `delete --force` does, for when it cannot be run. Blocking;
/// bounded.
pub(crate) fn kill_and_remove_cgroup(
    host: &Host,
    cg: &Path,
) -> std::result::Result<(), husk_sandbox::OsError> {
    for _ in 0..500 {
        match host.cgroups.pids(cg) {
            Ok(p) if !p.is_empty() => {
                let _ = host.cgroups.kill_all(cg, libc::SIGKILL);
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => break,
        }
    }
    let mut dirs = host.cgroups.host_paths(cg);
    if host.cgroups.version() == husk_sandbox::os::CgroupVersion::V1 {
        dirs.extend(husk_sandbox::os::cgroup::hybrid_unified_dir(cg));
    }
    host.cgroups.remove(&dirs)
}

/// What Delete reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub pid: u32,
    pub exit: Exit,
}

impl Tasks {
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<Deleted> {
        let c = self.get(id)?;
        if !exec_id.is_empty() {
            let p = c.process(exec_id)?;
            if !p.phase().can_delete() {
                return Err(Error::precondition(
                    &format!("{id}/{exec_id}"),
                    "is running; kill it first",
                ));
            }
            c.execs().remove(exec_id);
            let exit = p.exit.borrow().unwrap_or(Exit {
                status: 0,
                at: SystemTime::now(),
            });
            return Ok(Deleted { pid: p.pid(), exit });
        }
        let _op = c.ops.lock().await;
        if !self.contains(id) {
            return Err(Error::NotFound(id.to_string()));
        }
        let d = self.remove(&c).await?;
        self.slots().remove(id);
        self.unregister(id);
        self.events.publish(TaskEvent::Delete {
            container_id: id.to_string(),
            id: id.to_string(),
            pid: d.pid,
            status: d.exit.status,
            at: d.exit.at,
        });
        Ok(d)
    }

    /// Takes a stopped (or never started) container out of the runtime and
    /// off the host.
    async fn remove(&self, c: &Arc<Container>) -> Result<Deleted> {
        let id = c.id.as_str();
        match c.init.phase() {
            Phase::Running => {
                return Err(Error::precondition(id, "is running; kill it first"));
            }
            Phase::Created => {
                // Never started: its init waits in the runtime. Killing it
                // ourselves skips runc's `delete --force` sleep.
                let _ = self.host.procs.signal(c.init.pid(), libc::SIGKILL);
                tokio::time::timeout(KILL_WAIT, c.init.wait())
                    .await
                    .map_err(|_| Error::precondition(id, "did not exit after SIGKILL"))?;
            }
            Phase::Stopped => {}
        }
        let exit = c.init.wait().await;
        if let Err(e) = c.runtime.delete(id, false).await {
            tracing::debug!(%id, error = %e, "runtime delete; forcing");
            match c.runtime.delete(id, true).await {
                Ok(()) => {}
                // The runtime cannot be run at all (removed, broken by an
                // upgrade): the engine does its clean-up, so the pod can
                // still be removed. Any other failure is reported.
                Err(e @ crate::runtime::RuntimeError::Spawn { .. }) => {
                    tracing::warn!(%id, error = %e, "runtime unavailable: removing the container without it");
                    self.remove_without_runtime(c).await?;
                }
                Err(e) => return Err(Error::runtime(id, "delete")(e)),
            }
        }
        *c.oom.lock().unwrap_or_else(|e| e.into_inner()) = None;
        for m in c.mounts.iter().rev() {
            self.host
                .mounts
                .unmount(m)
                .map_err(Error::os(id, "unmount rootfs"))?;
        }
        for f in ["init.pid", TASK_RECORD, "log.json"] {
            let _ = std::fs::remove_file(c.bundle.join(f));
        }
        Ok(Deleted {
            pid: c.init.pid(),
            exit,
        })
    }

    /// What the runtime's `delete --force` does, without it: every process
    /// in the container's cgroup killed, the cgroup removed, the runtime's
    /// record dropped.
    async fn remove_without_runtime(&self, c: &Arc<Container>) -> Result<()> {
        let id = c.id.as_str();
        if let Some(cg) = c.spec.cgroup.clone() {
            let host = self.host.clone();
            tokio::task::spawn_blocking(move || kill_and_remove_cgroup(&host, &cg))
                .await
                .map_err(|e| Error::invalid(format!("remove {id}: {e}")))?
                .map_err(Error::os(id, "remove cgroup"))?;
        }
        c.runtime.forget(id);
        Ok(())
    }

    /// Stops and removes every container (the pod is shutting down).
    pub async fn remove_all(&self) -> Result<()> {
        self.stop_all(Duration::ZERO).await?;
        let mut first_err = None;
        for id in self.ids() {
            match self.delete(&id, "").await {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// `shim delete` of a pod whose shim died: reclaims every container the
/// registry holds, then the registry. Returns how many it reclaimed.
pub fn reclaim_all(host: &Host, registry: &Path, default_root: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(registry) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::invalid(format!("{}: {e}", registry.display()))),
    };
    let mut n = 0;
    let mut first_err = None;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            // Half-written: the same record was written ahead in the
            // container's bundle, or nothing was made yet.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let r = TaskRecord::load(&entry.path())
            .and_then(|rec| rec.map(|r| r.reclaim(host, default_root)).transpose());
        match r {
            Ok(found) => {
                n += usize::from(found.is_some());
                let _ = std::fs::remove_file(entry.path());
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => {
            let _ = std::fs::remove_dir(registry);
            Ok(n)
        }
    }
}

/// `shim delete` run for one container (`-id` a container) whose shim
/// died: from the record in its bundle. `Ok(false)`
/// when the bundle holds none (nothing of husk's there).
pub fn reclaim(host: &Host, bundle: &Path, default_root: &Path) -> Result<bool> {
    let Some(rec) = TaskRecord::load(&bundle.join(TASK_RECORD))? else {
        return Ok(false);
    };
    rec.reclaim(host, default_root)?;
    for f in ["init.pid", TASK_RECORD, "log.json"] {
        let _ = std::fs::remove_file(bundle.join(f));
    }
    Ok(true)
}
