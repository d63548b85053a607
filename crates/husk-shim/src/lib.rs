//! husk's shim: the shim v2 bootstrap (`start`, `delete`, serve) and the
//! ttrpc adapter that maps containerd's Sandbox API onto the engine.

pub mod bootstrap;
pub mod convert;
pub mod cri;
pub mod error;
pub mod events;
pub mod gate;
pub mod log;
pub mod paths;
pub mod pod;
pub mod reaper;
pub mod runtime_options;
pub mod serve;
pub mod server_proc;
pub mod service;
pub mod task;
