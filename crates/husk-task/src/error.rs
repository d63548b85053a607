//! The container engine's error. The shim maps it to ttrpc codes, once.

use husk_sandbox::OsError;

use crate::runtime::RuntimeError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{id}: {why}")]
    FailedPrecondition { id: String, why: String },
    #[error("{id}: {action}")]
    Os {
        id: String,
        action: &'static str,
        #[source]
        source: OsError,
    },
    #[error("{id}: {action}")]
    Runtime {
        id: String,
        action: &'static str,
        #[source]
        source: RuntimeError,
    },
    #[error("{0} is not supported by husk")]
    Unsupported(&'static str),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    pub fn precondition(id: &str, why: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            id: id.to_string(),
            why: why.into(),
        }
    }

    pub fn os<'a>(id: &'a str, action: &'static str) -> impl FnOnce(OsError) -> Error + 'a {
        move |source| Error::Os {
            id: id.to_string(),
            action,
            source,
        }
    }

    pub fn runtime<'a>(
        id: &'a str,
        action: &'static str,
    ) -> impl FnOnce(RuntimeError) -> Error + 'a {
        move |source| Error::Runtime {
            id: id.to_string(),
            action,
            source,
        }
    }
}

impl From<husk_sandbox::Error> for Error {
    fn from(e: husk_sandbox::Error) -> Self {
        match e {
            husk_sandbox::Error::InvalidArgument(m) => Error::InvalidArgument(m),
            husk_sandbox::Error::NotFound(id) => Error::NotFound(id),
            husk_sandbox::Error::AlreadyExists(id) => Error::AlreadyExists(id),
            other => Error::FailedPrecondition {
                id: String::new(),
                why: other.to_string(),
            },
        }
    }
}
