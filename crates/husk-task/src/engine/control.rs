//! Update, Pause, Resume, CloseIO and ResizePty.

use std::sync::atomic::Ordering;

use super::*;

impl Tasks {
    /// Applies OCI `LinuxResources` JSON to a live container.
    pub async fn update(&self, id: &str, resources: &[u8]) -> Result<()> {
        let c = self.get(id)?;
        let json = crate::spec::check_resources(resources)?;
        let _op = c.ops.lock().await;
        if c.init.phase() == Phase::Stopped {
            return Err(Error::precondition(id, "is stopped"));
        }
        c.runtime
            .update(id, &json)
            .await
            .map_err(Error::runtime(id, "update"))
    }

    pub async fn pause(&self, id: &str) -> Result<()> {
        let c = self.get(id)?;
        let _op = c.ops.lock().await;
        if c.init.phase() != Phase::Running {
            return Err(Error::precondition(id, "is not running"));
        }
        if c.paused.load(Ordering::SeqCst) {
            return Ok(());
        }
        c.runtime
            .pause(id)
            .await
            .map_err(Error::runtime(id, "pause"))?;
        c.paused.store(true, Ordering::SeqCst);
        self.events.publish(TaskEvent::Paused {
            container_id: id.to_string(),
        });
        Ok(())
    }

    pub async fn resume(&self, id: &str) -> Result<()> {
        let c = self.get(id)?;
        let _op = c.ops.lock().await;
        if !c.paused.load(Ordering::SeqCst) {
            return Err(Error::precondition(id, "is not paused"));
        }
        c.runtime
            .resume(id)
            .await
            .map_err(Error::runtime(id, "resume"))?;
        c.paused.store(false, Ordering::SeqCst);
        self.events.publish(TaskEvent::Resumed {
            container_id: id.to_string(),
        });
        Ok(())
    }

    /// Ends the process's stdin (the process reads EOF).
    pub async fn close_io(&self, id: &str, exec_id: &str) -> Result<()> {
        let c = self.get(id)?;
        let p = c.process(exec_id)?;
        if let Some(pio) = p.pio.lock().await.as_mut() {
            pio.close_stdin();
        }
        Ok(())
    }

    pub async fn resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let c = self.get(id)?;
        let p = c.process(exec_id)?;
        let guard = p.pio.lock().await;
        match guard.as_ref() {
            Some(pio) if pio.has_console() => pio
                .resize(width, height)
                .map_err(|e| Error::invalid(format!("resize: {e}"))),
            _ => Err(Error::precondition(id, "has no terminal")),
        }
    }
}
