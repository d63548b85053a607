//! Kill, and stopping every container when the pod stops.

use super::*;

impl Tasks {
    /// Signals the init (or, with `all`, every process of the container),
    /// or one exec. A finished process is NotFound, as containerd expects.
    pub async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let c = self.get(id)?;
        let p = c.process(exec_id)?;
        let sig = i32::try_from(signal)
            .ok()
            .filter(|s| (1..=64).contains(s))
            .ok_or_else(|| Error::invalid(format!("signal {signal}")))?;
        let (phase, pid) = {
            let st = p.st();
            (st.phase, st.pid)
        };
        if all && exec_id.is_empty() {
            if phase == Phase::Stopped {
                // Only stragglers can remain: signal what the cgroup holds.
                if let Some(cg) = &c.spec.cgroup {
                    self.host
                        .cgroups
                        .kill_all(cg, sig)
                        .map_err(Error::os(id, "kill all"))?;
                }
                return Ok(());
            }
            return c
                .runtime
                .kill(id, signal, true)
                .await
                .map_err(Error::runtime(id, "kill"));
        }
        if !phase.can_signal() {
            return Err(Error::NotFound(format!("{id}: process already finished")));
        }
        // The process is our unreaped child until its exit is recorded, so
        // its pid cannot have been reused.
        self.host
            .procs
            .signal(pid, sig)
            .map_err(Error::os(id, "kill"))?;
        if sig == libc::SIGKILL && c.paused.load(std::sync::atomic::Ordering::SeqCst) {
            // A frozen process takes SIGKILL only once thawed.
            let _ = c.runtime.resume(id).await;
            c.paused.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// Stops every container of the pod: SIGTERM, up to `timeout` for each
    /// to exit, then SIGKILL to all of its processes. Returns once every
    /// init's exit is recorded (and published).
    pub async fn stop_all(&self, timeout: Duration) -> Result<()> {
        let conts: Vec<Arc<Container>> = self
            .slots()
            .values()
            .filter_map(|s| match s {
                Slot::Ready(c) => Some(c.clone()),
                Slot::Creating => None,
            })
            .collect();
        let stops = conts.iter().map(|c| self.stop_one(c, timeout));
        let mut first_err = None;
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn stop_one(&self, c: &Arc<Container>, timeout: Duration) -> Result<()> {
        let p = &c.init;
        if p.phase() == Phase::Stopped {
            return Ok(());
        }
        if !timeout.is_zero() && p.phase() == Phase::Running {
            let _ = self.kill(&c.id, "", libc::SIGTERM as u32, false).await;
            if tokio::time::timeout(timeout, p.wait()).await.is_ok() {
                return Ok(());
            }
        }
        let _ = self.kill(&c.id, "", libc::SIGKILL as u32, false).await;
        if let Some(cg) = &c.spec.cgroup {
            let _ = self.host.cgroups.kill_all(cg, libc::SIGKILL);
        }
        tokio::time::timeout(KILL_WAIT, p.wait())
            .await
            .map(|_| ())
            .map_err(|_| Error::precondition(&c.id, "did not exit after SIGKILL"))
    }
}
