//! husk's sandbox engine: the pod state machine and everything it does to
//! the host, behind the narrow traits in [`os`]. Knows nothing of protobuf.

pub mod config;
pub mod engine;
pub mod error;
pub mod id;
pub mod inspect;
pub mod metrics;
pub mod os;
pub mod platform;
pub mod podfiles;
pub mod state;

pub use config::{CreateRequest, Dns, Mount, Network, NsMode, PodConfig};
pub use engine::{Engine, ExitInfo, Host, PodView, SandboxMetrics, Started, Status};
pub use error::{Error, OsError, Result};
pub use platform::Platform;
pub use state::{Phase, Record, StateStore};
