//! The `containerd.task.v3.Task` service, as far as a sandbox shim needs
//! it today: containerd reconnects to a running shim after its own restart
//! by calling `Connect` (and `Pids`) with the sandbox id, and calls
//! `Shutdown` after deleting tasks. The sandbox's "task" is its holder.
//!
//! Containers inside a husk pod (Create, Start, Exec, …) are not served
//! yet: those calls answer UNIMPLEMENTED with a message saying so, never a
//! NotFound that containerd could mistake for "already gone".

use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::types::task::{ProcessInfo, Status as TaskStatus};
use ttrpc::r#async::TtrpcContext;

use crate::convert;
use crate::error::ShimError;
use crate::service::{ExitGate, SandboxApi};

pub struct TaskService<E: SandboxApi> {
    engine: Arc<E>,
    gate: ExitGate,
}

impl<E: SandboxApi> TaskService<E> {
    pub fn new(engine: Arc<E>, gate: ExitGate) -> Self {
        TaskService { engine, gate }
    }
}

fn unimplemented<T>(rpc: &str) -> ttrpc::Result<T> {
    Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
        ttrpc::Code::UNIMPLEMENTED,
        format!("{rpc}: containers in a husk pod are not supported yet (the sandbox API is)"),
    )))
}

/// Writes the Task impl: the given methods, plus an UNIMPLEMENTED answer
/// for each listed container verb. (The attribute has to be inside the
/// macro so that async_trait sees the generated methods.)
macro_rules! task_impl {
    ({ $($given:item)* } not_yet { $($name:ident($req:ty) -> $resp:ty;)* }) => {
        #[async_trait]
        impl<E: SandboxApi> Task for TaskService<E> {
            $($given)*
            $(
                async fn $name(&self, _ctx: &TtrpcContext, _req: $req) -> ttrpc::Result<$resp> {
                    unimplemented(concat!("Task.", stringify!($name)))
                }
            )*
        }
    };
}

task_impl! {{
    async fn connect(&self, _ctx: &TtrpcContext, req: api::ConnectRequest) -> ttrpc::Result<api::ConnectResponse> {
        let st = self.engine.status(&req.id, false).map_err(ShimError::from)?;
        let mut resp = api::ConnectResponse::new();
        resp.shim_pid = std::process::id();
        resp.task_pid = st.pid;
        resp.version = env!("CARGO_PKG_VERSION").to_string();
        Ok(resp)
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> ttrpc::Result<api::PidsResponse> {
        let pids = self.engine.pids(&req.id).map_err(ShimError::from)?;
        let mut resp = api::PidsResponse::new();
        resp.processes = pids
            .into_iter()
            .map(|pid| {
                let mut p = ProcessInfo::new();
                p.pid = pid;
                p
            })
            .collect();
        Ok(resp)
    }

    async fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> ttrpc::Result<api::StateResponse> {
        if !req.exec_id.is_empty() {
            return unimplemented("Task.State of an exec");
        }
        let st = self.engine.status(&req.id, false).map_err(ShimError::from)?;
        let mut resp = api::StateResponse::new();
        resp.id = st.id;
        resp.bundle = st.bundle.display().to_string();
        resp.pid = st.pid;
        resp.status = EnumOrUnknown::new(match (st.ready, st.exited_at) {
            (true, _) => TaskStatus::RUNNING,
            (false, Some(_)) => TaskStatus::STOPPED,
            (false, None) => TaskStatus::CREATED,
        });
        resp.exit_status = st.exit_status.unwrap_or(0);
        if let Some(t) = st.exited_at {
            resp.exited_at = MessageField::some(convert::timestamp(t));
        }
        Ok(resp)
    }

    /// containerd sends this after deleting a task. The shim stays while
    /// a sandbox remains; with none left it may exit.
    async fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> ttrpc::Result<Empty> {
        if self.engine.count() == 0 {
            self.gate.open();
        }
        Ok(Empty::new())
    }
} not_yet {
        create(api::CreateTaskRequest) -> api::CreateTaskResponse;
        start(api::StartRequest) -> api::StartResponse;
        delete(api::DeleteRequest) -> api::DeleteResponse;
        pause(api::PauseRequest) -> Empty;
        resume(api::ResumeRequest) -> Empty;
        checkpoint(api::CheckpointTaskRequest) -> Empty;
        kill(api::KillRequest) -> Empty;
        exec(api::ExecProcessRequest) -> Empty;
        resize_pty(api::ResizePtyRequest) -> Empty;
        close_io(api::CloseIORequest) -> Empty;
        update(api::UpdateTaskRequest) -> Empty;
        wait(api::WaitRequest) -> api::WaitResponse;
        stats(api::StatsRequest) -> api::StatsResponse;
}}
