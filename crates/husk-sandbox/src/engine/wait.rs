//! WaitSandbox.

use super::*;

impl Engine {
    pub async fn wait(&self, id: &str) -> Result<ExitInfo> {
        let mut rx = self.get(id)?.exit.subscribe();
        let r = rx.wait_for(|e| e.is_some()).await;
        match r {
            Ok(v) => v.ok_or_else(|| Error::NotFound(id.to_string())),
            Err(_) => Err(Error::NotFound(id.to_string())),
        }
    }
}
