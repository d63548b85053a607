//! Errors of the engine and of the OS layer beneath it.

use std::io;
use std::path::PathBuf;

/// An OS effect that failed: the operation, the object it touched and the errno.
#[derive(Debug, thiserror::Error)]
pub enum OsError {
    #[error("{op} {path}")]
    Path {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{op}")]
    Sys {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("pod holder setup failed at {step}")]
    HolderSetup {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("processes of cgroup {path} still alive after SIGKILL")]
    Unkillable { path: PathBuf },
}

impl OsError {
    pub fn path(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        OsError::Path {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn sys(op: &'static str, source: impl Into<io::Error>) -> Self {
        OsError::Sys {
            op,
            source: source.into(),
        }
    }

    /// The errno behind the error, when there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            OsError::Path { source, .. }
            | OsError::Sys { source, .. }
            | OsError::HolderSetup { source, .. } => source.raw_os_error(),
            OsError::Unkillable { .. } => None,
        }
    }
}

/// The engine's error: what a caller did wrong, or what the OS refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("sandbox {0} not found")]
    NotFound(String),
    #[error("sandbox {0} already exists")]
    AlreadyExists(String),
    #[error("sandbox {id}: {msg}")]
    FailedPrecondition { id: String, msg: String },
    #[error("sandbox {id}: {action}")]
    Os {
        id: String,
        action: &'static str,
        #[source]
        source: OsError,
    },
    #[error("sandbox {id}: {action} failed ({primary}); cleanup also failed ({cleanup})")]
    CleanupFailed {
        id: String,
        action: &'static str,
        primary: Box<Error>,
        cleanup: OsError,
    },
    #[error("state store {path}")]
    State {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    pub fn precondition(id: &str, msg: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            id: id.to_string(),
            msg: msg.into(),
        }
    }

    pub fn os<'a>(id: &'a str, action: &'static str) -> impl FnOnce(OsError) -> Error + 'a {
        move |source| Error::Os {
            id: id.to_string(),
            action,
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
