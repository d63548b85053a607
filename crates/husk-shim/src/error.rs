//! The shim's error, and the one place where errors become ttrpc codes.

use husk_sandbox::Error as EngineError;
use husk_task::Error as TaskError;
use ttrpc::Code;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("invalid argument: {0}")]
    Decode(String),
    #[error("encoding {0}")]
    Encode(String),
}

impl ShimError {
    pub fn code(&self) -> Code {
        match self {
            ShimError::Decode(_) => Code::INVALID_ARGUMENT,
            ShimError::Encode(_) => Code::INTERNAL,
            ShimError::Task(e) => match e {
                TaskError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
                TaskError::NotFound(_) => Code::NOT_FOUND,
                TaskError::AlreadyExists(_) => Code::ALREADY_EXISTS,
                TaskError::FailedPrecondition { .. } => Code::FAILED_PRECONDITION,
                TaskError::Unsupported(_) => Code::UNIMPLEMENTED,
                TaskError::Os { .. } | TaskError::Runtime { .. } => Code::INTERNAL,
            },
            ShimError::Engine(e) => match e {
                EngineError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
                EngineError::NotFound(_) => Code::NOT_FOUND,
                EngineError::AlreadyExists(_) => Code::ALREADY_EXISTS,
                EngineError::FailedPrecondition { .. } => Code::FAILED_PRECONDITION,
                EngineError::Os { .. }
                | EngineError::CleanupFailed { .. }
                | EngineError::State { .. } => Code::INTERNAL,
            },
        }
    }
}

/// Renders an error with its chain of causes, so the reply says the
/// syscall and errno, not just the action.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), chain(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let c = |e: EngineError| ShimError::from(e).code();
        assert_eq!(c(EngineError::invalid("x")), Code::INVALID_ARGUMENT);
        assert_eq!(c(EngineError::NotFound("x".into())), Code::NOT_FOUND);
        assert_eq!(
            c(EngineError::AlreadyExists("x".into())),
            Code::ALREADY_EXISTS
        );
        assert_eq!(
            c(EngineError::precondition("x", "y")),
            Code::FAILED_PRECONDITION
        );
        assert_eq!(ShimError::Decode("x".into()).code(), Code::INVALID_ARGUMENT);
        let t = |e: TaskError| ShimError::from(e).code();
        assert_eq!(t(TaskError::invalid("x")), Code::INVALID_ARGUMENT);
        assert_eq!(t(TaskError::NotFound("x".into())), Code::NOT_FOUND);
        assert_eq!(
            t(TaskError::AlreadyExists("x".into())),
            Code::ALREADY_EXISTS
        );
        assert_eq!(
            t(TaskError::precondition("x", "y")),
            Code::FAILED_PRECONDITION
        );
        assert_eq!(t(TaskError::Unsupported("checkpoint")), Code::UNIMPLEMENTED);
    }

    #[test]
    fn status_carries_message() {
        let e: ttrpc::Error = ShimError::from(EngineError::NotFound("pod1".into())).into();
        match e {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), Code::NOT_FOUND);
                assert!(s.message().contains("pod1"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
