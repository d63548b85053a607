//! The container engine's requests and answers, free of protobuf.

use std::path::PathBuf;
use std::time::SystemTime;

use husk_sandbox::Mount;

use crate::options::RuntimeOptions;

/// Where a process's stdio goes: FIFO paths (CRI), `file://` or
/// `binary://` URIs (ctr), or empty for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateTask {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<Mount>,
    pub io: IoPaths,
    pub options: RuntimeOptions,
    /// The pod's files (hostname, hosts, resolv.conf, shm) to give the
    /// container, from the sandbox's read-only view.
    pub pod_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecTask {
    pub id: String,
    pub exec_id: String,
    pub io: IoPaths,
    /// The OCI process, as JSON (the `spec` Any's value).
    pub process: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

/// A process's state as containerd's Task API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Created,
    Running,
    Stopped,
    Paused,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessState {
    pub id: String,
    pub exec_id: String,
    pub bundle: PathBuf,
    pub pid: u32,
    pub status: TaskStatus,
    pub io: IoPaths,
    pub exit: Option<Exit>,
}
