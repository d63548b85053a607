//! ShutdownSandbox.

use super::*;

impl Engine {
    /// Stops the sandbox if needed and removes all it made. Returns how
    /// many sandboxes this engine still holds. An unknown id is NotFound,
    /// unless the engine holds nothing at all.
    pub async fn shutdown(&self, id: &str) -> Result<usize> {
        let sb = match self.get(id) {
            Ok(sb) => sb,
            // Already shut down (containerd retries), or never created
            // (containerd shuts down after a failed Create): nothing is left
            // to remove, so the shim may go.
            Err(Error::NotFound(_)) if self.is_empty() || self.was_shut_down(id) => {
                return Ok(self.len())
            }
            Err(e) => return Err(e),
        };
        let _op = sb.ops.lock().await;
        if !self.slots().contains_key(id) {
            return Ok(self.len()); // a concurrent Shutdown finished first
        }
        self.stop_locked(id, &sb, Duration::ZERO).await?;
        let rec = sb.rec().clone();
        reclaim::teardown_async(&self.host, &rec)
            .await
            .map_err(Error::os(id, "clean up"))?;
        self.store.remove(id)?;
        self.gone
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
        let mut slots = self.slots();
        slots.remove(id);
        Ok(slots.len())
    }
}
