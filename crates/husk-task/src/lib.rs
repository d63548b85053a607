//! husk's container engine: the containers and exec processes of a husk
//! pod, their state machine, IO, exits and events, over an OCI runtime
//! binary behind the [`runtime::OciRuntime`] seam. It sees the pod only
//! through husk-sandbox's read-only view and OS seam; it knows nothing of
//! protobuf.

pub mod engine;
pub mod error;
pub mod events;
pub mod oom;
pub mod options;
pub mod runtime;
pub mod spec;
pub mod stdio;
pub mod types;

pub use engine::Tasks;
pub use error::{Error, Result};
pub use events::{EventSink, TaskEvent};
pub use options::RuntimeOptions;
pub use types::{CreateTask, ExecTask, Exit, IoPaths, ProcessState, TaskStatus};
