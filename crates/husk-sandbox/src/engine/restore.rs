//! A restarted shim loads its sandbox back from the state record.

use super::*;

impl Engine {
    /// Loads a persisted sandbox into a fresh engine (a restarted shim).
    /// A holder that still runs is adopted; its exit status cannot be
    /// observed any more and is reported as 255.
    pub fn restore(&self, id: &str) -> Result<bool> {
        let Some(mut rec) = self.store.load(id)? else {
            return Ok(false);
        };
        let mut adopt = None;
        if rec.phase == Phase::Running {
            let same = self.host.procs.start_time(rec.pid) == Some(rec.pid_start);
            match same.then(|| self.host.procs.watch_foreign(rec.pid)) {
                Some(Ok(fut)) => adopt = Some(fut),
                _ => {
                    rec.phase = Phase::Stopped;
                    rec.exit_status = Some(UNKNOWN_EXIT);
                    rec.exited_at = Some(now_nanos());
                    self.store.save(&rec)?;
                }
            }
        }
        let sb = Sandbox::new(rec);
        if let Some(fut) = adopt {
            let store = self.store.clone();
            let sb2 = sb.clone();
            tokio::spawn(async move {
                fut.await;
                record_exit(&sb2, &store, UNKNOWN_EXIT);
            });
        }
        self.slots().insert(id.to_string(), Slot::Ready(sb));
        Ok(true)
    }
}
