//! The pod one shim serves: its sandbox engine and its container engine,
//! shared by the Sandbox and Task adapters, and the one place that decides
//! when the server may exit: no sandbox and no container left.

use std::sync::Arc;

use husk_sandbox::Engine;
use husk_task::Tasks;
use tokio::sync::watch;

pub struct Pod {
    pub sandboxes: Engine,
    pub tasks: Tasks,
    /// The node's runtime options (husk's config file), for what
    /// containerd's options leave unset.
    pub runtime_defaults: husk_task::RuntimeOptions,
    exit: watch::Sender<bool>,
}

impl Pod {
    pub fn new(
        sandboxes: Engine,
        tasks: Tasks,
        runtime_defaults: husk_task::RuntimeOptions,
    ) -> Arc<Pod> {
        Arc::new(Pod {
            sandboxes,
            tasks,
            runtime_defaults,
            exit: watch::channel(false).0,
        })
    }

    /// After a Shutdown: lets the server go once nothing is left to serve.
    pub fn exit_if_empty(&self) {
        if self.sandboxes.is_empty() && self.tasks.is_empty() {
            self.exit.send_replace(true);
        }
    }

    /// Resolves (true) once the server may exit.
    pub fn exit_gate(&self) -> watch::Receiver<bool> {
        self.exit.subscribe()
    }

    /// Nothing held at all (for the idle exit).
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.tasks.is_empty()
    }
}
