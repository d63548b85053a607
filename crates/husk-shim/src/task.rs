//! The `containerd.task.v3.Task` adapter: containers of the pod through
//! husk-task's engine, and the sandbox's own "task" (its holder), which
//! containerd reconnects to after a restart (`Connect`, `Pids`, `State`).
//! Errors go through `ShimError`'s one mapping; each call is traced.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::types::task::{ProcessInfo, Status as PbStatus};
use husk_task::{CreateTask, ExecTask, IoPaths, ProcessState, TaskStatus};
use ttrpc::r#async::TtrpcContext;

use crate::convert;
use crate::error::ShimError;
use crate::pod::Pod;
use crate::service::traced;

pub struct TaskService {
    pod: Arc<Pod>,
}

impl TaskService {
    pub fn new(pod: Arc<Pod>) -> Self {
        TaskService { pod }
    }

    /// The files of the pod the shim holds (one sandbox per shim), for
    /// the container to mount.
    fn pod_files(&self) -> Vec<PathBuf> {
        let ids = self.pod.sandboxes.ids();
        match ids.as_slice() {
            [id] => self
                .pod
                .sandboxes
                .view(id)
                .map(|v| v.files)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The id names the sandbox itself (not one of its containers).
    fn is_sandbox(&self, id: &str) -> bool {
        !self.pod.tasks.contains(id) && self.pod.sandboxes.status(id, false).is_ok()
    }
}

fn pb_status(s: TaskStatus) -> EnumOrUnknown<PbStatus> {
    EnumOrUnknown::new(match s {
        TaskStatus::Created => PbStatus::CREATED,
        TaskStatus::Running => PbStatus::RUNNING,
        TaskStatus::Stopped => PbStatus::STOPPED,
        TaskStatus::Paused => PbStatus::PAUSED,
    })
}

fn state_response(s: ProcessState) -> api::StateResponse {
    let mut r = api::StateResponse::new();
    r.id = if s.exec_id.is_empty() {
        s.id
    } else {
        s.exec_id.clone()
    };
    r.exec_id = s.exec_id;
    r.bundle = s.bundle.display().to_string();
    r.pid = s.pid;
    r.status = pb_status(s.status);
    r.stdin = s.io.stdin;
    r.stdout = s.io.stdout;
    r.stderr = s.io.stderr;
    r.terminal = s.io.terminal;
    if let Some(e) = s.exit {
        r.exit_status = e.status;
        r.exited_at = MessageField::some(convert::timestamp(e.at));
    }
    r
}

fn pids_response(pids: Vec<u32>) -> api::PidsResponse {
    let mut resp = api::PidsResponse::new();
    resp.processes = pids
        .into_iter()
        .map(|pid| {
            let mut p = ProcessInfo::new();
            p.pid = pid;
            p
        })
        .collect();
    resp
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        let t0 = Instant::now();
        let r = async {
            if !req.checkpoint.is_empty() || !req.parent_checkpoint.is_empty() {
                return Err(husk_task::Error::Unsupported("restoring from a checkpoint").into());
            }
            let options = match req.options.as_ref() {
                Some(a) => crate::runtime_options::decode(&a.type_url, &a.value)?,
                None => husk_task::RuntimeOptions::default(),
            }
            .or(&self.pod.runtime_defaults);
            let pid = self
                .pod
                .tasks
                .create(CreateTask {
                    id: req.id.clone(),
                    bundle: PathBuf::from(&req.bundle),
                    rootfs: req.rootfs.iter().map(crate::service::mount).collect(),
                    io: IoPaths {
                        stdin: req.stdin.clone(),
                        stdout: req.stdout.clone(),
                        stderr: req.stderr.clone(),
                        terminal: req.terminal,
                    },
                    options,
                    pod_files: self.pod_files(),
                })
                .await?;
            let mut resp = api::CreateTaskResponse::new();
            resp.pid = pid;
            Ok(resp)
        }
        .await;
        traced("Task.Create", &req.id, t0, r)
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> ttrpc::Result<api::StartResponse> {
        let t0 = Instant::now();
        let r = self
            .pod
            .tasks
            .start(&req.id, &req.exec_id)
            .await
            .map_err(ShimError::from)
            .map(|pid| {
                let mut resp = api::StartResponse::new();
                resp.pid = pid;
                resp
            });
        // Parsing the spec and running the runtime touched heap the
        // container's whole life would otherwise keep resident.
        crate::service::release_free_heap();
        traced("Task.Start", &req.id, t0, r)
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> ttrpc::Result<api::DeleteResponse> {
        let t0 = Instant::now();
        let r = self
            .pod
            .tasks
            .delete(&req.id, &req.exec_id)
            .await
            .map_err(ShimError::from)
            .map(|d| {
                let mut resp = api::DeleteResponse::new();
                resp.pid = d.pid;
                resp.exit_status = d.exit.status;
                resp.exited_at = MessageField::some(convert::timestamp(d.exit.at));
                resp
            });
        traced("Task.Delete", &req.id, t0, r)
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> ttrpc::Result<api::PidsResponse> {
        let t0 = Instant::now();
        let r = if self.is_sandbox(&req.id) {
            self.pod.sandboxes.pids(&req.id).map_err(ShimError::from)
        } else {
            self.pod.tasks.pids(&req.id).map_err(ShimError::from)
        };
        traced("Task.Pids", &req.id, t0, r.map(pids_response))
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> ttrpc::Result<Empty> {
        let t0 = Instant::now();
        let r = self.pod.tasks.pause(&req.id).await.map_err(ShimError::from);
        traced("Task.Pause", &req.id, t0, r.map(|()| Empty::new()))
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> ttrpc::Result<Empty> {
        let t0 = Instant::now();
        let r = self
            .pod
            .tasks
            .resume(&req.id)
            .await
            .map_err(ShimError::from);
        traced("Task.Resume", &req.id, t0, r.map(|()| Empty::new()))
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        let t0 = Instant::now();
        let r: Result<Empty, ShimError> =
            Err(husk_task::Error::Unsupported("checkpointing a container").into());
        traced("Task.Checkpoint", &req.id, t0, r)
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> ttrpc::Result<Empty> {
        let t0 = Instant::now();
        let r = if self.is_sandbox(&req.id) {
            // The sandbox's task is its holder: a kill stops the pod.
            let timeout = std::time::Duration::ZERO;
            async {
                self.pod.tasks.stop_all(timeout).await?;
                self.pod.sandboxes.stop(&req.id, timeout).await?;
                Ok(())
            }
            .await
        } else {
            self.pod
                .tasks
                .kill(&req.id, &req.exec_id, req.signal, req.all)
                .await
                .map_err(ShimError::from)
        };
        traced("Task.Kill", &req.id, t0, r.map(|()| Empty::new()))
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> ttrpc::Result<Empty> {
        let t0 = Instant::now();
        let r = self
            .pod
            .tasks
            .exec(ExecTask {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                io: IoPaths {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                },
                process: req
                    .spec
                    .as_ref()
                    .map(|a| a.value.clone())
                    .unwrap_or_default(),
            })
            .await
            .map_err(ShimError::from);
        traced("Task.Exec", &req.id, t0, r.map(|()| Empty::new()))
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> ttrpc::Result<Empty> {
        let t0 = Instant::now();
        let r = self
            .pod
            .tasks
            .resize_pty(&req.id, &req.exec_id, req.width, req.height)
            .await
            .map_err(ShimError::from);
        traced("Task.ResizePty", &req.id, t0, r.map(|()| Empty::new()))
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> ttrpc::Result<Empty> {
        let t0 = Instant::now();
        let r = if req.stdin {
            self.pod
                .tasks
                .close_io(&req.id, &req.exec_id)
                .await
                .map_err(ShimError::from)
        } else {
            Ok(())
        };
        traced("Task.CloseIO", &req.id, t0, r.map(|()| Empty::new()))
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> ttrpc::Result<Empty> {
        let t0 = Instant::now();
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let r = self
            .pod
            .tasks
            .update(&req.id, &resources)
            .await
            .map_err(ShimError::from);
        traced("Task.Update", &req.id, t0, r.map(|()| Empty::new()))
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> ttrpc::Result<api::WaitResponse> {
        let t0 = Instant::now();
        let r = if self.is_sandbox(&req.id) {
            self.pod
                .sandboxes
                .wait(&req.id)
                .await
                .map(|e| (e.status, e.at))
                .map_err(ShimError::from)
        } else {
            self.pod
                .tasks
                .wait(&req.id, &req.exec_id)
                .await
                .map(|e| (e.status, e.at))
                .map_err(ShimError::from)
        };
        let r = r.map(|(status, at)| {
            let mut resp = api::WaitResponse::new();
            resp.exit_status = status;
            resp.exited_at = MessageField::some(convert::timestamp(at));
            resp
        });
        traced("Task.Wait", &req.id, t0, r)
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> ttrpc::Result<api::StatsResponse> {
        let t0 = Instant::now();
        let r = self
            .pod
            .tasks
            .stats(&req.id)
            .map_err(ShimError::from)
            .and_then(|s| {
                let any = convert::metrics_any(&s)
                    .map_err(|e| ShimError::Encode(format!("stats: {e}")))?;
                let mut resp = api::StatsResponse::new();
                resp.stats = MessageField::some(any);
                Ok(resp)
            });
        traced("Task.Stats", &req.id, t0, r)
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> ttrpc::Result<api::StateResponse> {
        let t0 = Instant::now();
        let r = if self.is_sandbox(&req.id) && req.exec_id.is_empty() {
            self.pod
                .sandboxes
                .status(&req.id, false)
                .map_err(ShimError::from)
                .map(|st| {
                    let mut resp = api::StateResponse::new();
                    resp.id = st.id;
                    resp.bundle = st.bundle.display().to_string();
                    resp.pid = st.pid;
                    resp.status = pb_status(match (st.ready, st.exited_at) {
                        (true, _) => TaskStatus::Running,
                        (false, Some(_)) => TaskStatus::Stopped,
                        (false, None) => TaskStatus::Created,
                    });
                    resp.exit_status = st.exit_status.unwrap_or(0);
                    if let Some(t) = st.exited_at {
                        resp.exited_at = MessageField::some(convert::timestamp(t));
                    }
                    resp
                })
        } else {
            self.pod
                .tasks
                .state(&req.id, &req.exec_id)
                .map_err(ShimError::from)
                .map(state_response)
        };
        traced("Task.State", &req.id, t0, r)
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> ttrpc::Result<api::ConnectResponse> {
        let t0 = Instant::now();
        let r = if self.is_sandbox(&req.id) {
            self.pod
                .sandboxes
                .status(&req.id, false)
                .map(|s| s.pid)
                .map_err(ShimError::from)
        } else {
            self.pod.tasks.pid(&req.id).map_err(ShimError::from)
        };
        let r = r.map(|pid| {
            let mut resp = api::ConnectResponse::new();
            resp.shim_pid = std::process::id();
            resp.task_pid = pid;
            resp.version = env!("CARGO_PKG_VERSION").to_string();
            resp
        });
        traced("Task.Connect", &req.id, t0, r)
    }

    /// containerd sends this after deleting a task. The shim stays while a
    /// sandbox or a container remains.
    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        req: api::ShutdownRequest,
    ) -> ttrpc::Result<Empty> {
        let t0 = Instant::now();
        self.pod.exit_if_empty();
        traced("Task.Shutdown", &req.id, t0, Ok(Empty::new()))
    }
}
