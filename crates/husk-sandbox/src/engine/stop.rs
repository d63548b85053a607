//! StopSandbox: SIGTERM, a grace period, then SIGKILL until the pod is empty.

use super::*;

impl Engine {
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        let sb = self.get(id)?;
        let _op = sb.ops.lock().await;
        self.stop_locked(id, &sb, timeout).await
    }

    pub(super) async fn stop_locked(
        &self,
        id: &str,
        sb: &Arc<Sandbox>,
        timeout: Duration,
    ) -> Result<()> {
        let (phase, pid, rel) = {
            let rec = sb.rec();
            (rec.phase, rec.pid, rec.cgroup.clone())
        };
        match phase {
            Phase::Created => {
                // Never started: nothing runs, but waiters must learn it is over.
                record_exit(sb, &self.store, 0);
                return Ok(());
            }
            Phase::Stopped => {}
            Phase::Running => {}
        }
        let cg = &self.host.cgroups;
        let procs = &self.host.procs;
        if phase == Phase::Running {
            procs
                .signal(pid, libc::SIGTERM)
                .map_err(Error::os(id, "signal holder"))?;
        }
        cg.kill_all(&rel, libc::SIGTERM)
            .map_err(Error::os(id, "signal pod processes"))?;
        let deadline = Instant::now() + timeout;
        let mut exit = sb.exit.subscribe();
        let cgroup_empty = || -> Result<bool> {
            Ok(cg
                .pids(&rel)
                .map_err(Error::os(id, "list pod processes"))?
                .is_empty())
        };
        if !timeout.is_zero() {
            // The holder's exit is the event that matters (it is the pod's
            // PID 1, so the kernel kills the rest of its PID namespace).
            let _ = tokio::time::timeout(timeout, exit.wait_for(|e| e.is_some())).await;
            while Instant::now() < deadline {
                if cgroup_empty()? && exit.borrow().is_some() {
                    return Ok(());
                }
                tokio::time::sleep(POLL).await;
            }
        }
        // Grace is over: kill whatever remains, including processes that
        // ignore SIGTERM or were moved into the pod cgroup.
        let kill_deadline = Instant::now() + KILL_GRACE;
        loop {
            let exited = exit.borrow().is_some();
            if phase == Phase::Running && !exited {
                procs
                    .signal(pid, libc::SIGKILL)
                    .map_err(Error::os(id, "kill holder"))?;
            }
            cg.kill_all(&rel, libc::SIGKILL)
                .map_err(Error::os(id, "kill pod processes"))?;
            if !exited {
                let _ = tokio::time::timeout(POLL * 5, exit.wait_for(|e| e.is_some())).await;
            }
            let empty = cgroup_empty()?;
            if empty && exit.borrow().is_some() {
                return Ok(());
            }
            if Instant::now() >= kill_deadline {
                return Err(Error::os(id, "stop")(OsError::Unkillable {
                    path: rel.clone(),
                }));
            }
            if !empty {
                tokio::time::sleep(POLL / 2).await;
            }
        }
    }
}
