//! The ttrpc adapter: `containerd.runtime.sandbox.v1.Sandbox` mapped onto a
//! domain trait. It converts protobuf to engine types and back, and maps
//! errors through `ShimError` only; it never touches the OS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::sandbox_api as api;
use containerd_shim_protos::sandbox_async::Sandbox;
use husk_sandbox::{CreateRequest, Mount, Status};
use ttrpc::r#async::TtrpcContext;

use crate::convert;
use crate::cri;
use crate::error::ShimError;
use crate::pod::Pod;

pub struct SandboxService {
    pod: Arc<Pod>,
}

impl SandboxService {
    pub fn new(pod: Arc<Pod>) -> Self {
        SandboxService { pod }
    }
}

/// A containerd mount as the engines take it.
pub fn mount(m: &containerd_shim_protos::types::mount::Mount) -> Mount {
    Mount {
        kind: m.type_.clone(),
        source: m.source.clone(),
        target: m.target.clone(),
        options: m.options.clone(),
    }
}

/// Maps CreateSandboxRequest to the engine's request.
pub fn create_request(req: &api::CreateSandboxRequest) -> Result<CreateRequest, ShimError> {
    let pod = match req.options.as_ref() {
        Some(any) if cri::is_pod_config(&any.type_url) => cri::decode_pod_config(&any.value)?,
        Some(any) if !any.type_url.is_empty() || !any.value.is_empty() => {
            tracing::debug!(type_url = %any.type_url, "sandbox options of another type ignored");
            Default::default()
        }
        _ => Default::default(),
    };
    Ok(CreateRequest {
        id: req.sandbox_id.clone(),
        bundle: PathBuf::from(&req.bundle_path),
        rootfs: req.rootfs.iter().map(mount).collect(),
        netns_path: (!req.netns_path.is_empty()).then(|| PathBuf::from(&req.netns_path)),
        pod,
        annotations: req
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

pub fn status_response(s: &Status) -> api::SandboxStatusResponse {
    let mut r = api::SandboxStatusResponse::new();
    r.sandbox_id = s.id.clone();
    r.pid = s.pid;
    r.state = if s.ready {
        "SANDBOX_READY"
    } else {
        "SANDBOX_NOTREADY"
    }
    .to_string();
    r.info = s.info.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    r.created_at = MessageField::some(convert::timestamp(s.created_at));
    if let Some(t) = s.exited_at {
        r.exited_at = MessageField::some(convert::timestamp(t));
    }
    r
}

/// Hands freed heap pages, and the stack pages below the one in use, back
/// to the kernel. A shim lives as long as its pod, and the memory that
/// create/start touched once is otherwise kept resident for the pod's
/// whole life: about 100 KiB of heap and 60 KiB of stack per pod.
pub(crate) fn release_free_heap() {
    // SAFETY: malloc_trim only walks and trims the allocator's own free
    // lists; it takes the allocator's locks and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
    release_unused_stack();
}

/// Trims once the server has had no request for half a second: the pages
/// a burst of requests touched (CRI's StartContainer is followed by a
/// status, stats and more) go back to the kernel when the burst is over,
/// not at a fixed point inside it. One timer, armed by every request.
fn trim_when_idle() {
    static IDLE: std::sync::OnceLock<Arc<tokio::sync::Notify>> = std::sync::OnceLock::new();
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let n = IDLE.get_or_init(|| {
        let n = Arc::new(tokio::sync::Notify::new());
        let w = n.clone();
        rt.spawn(async move {
            loop {
                w.notified().await;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => break,
                        _ = w.notified() => {}
                    }
                }
                release_free_heap();
            }
        });
        n
    });
    n.notify_one();
}

/// The main thread's stack keeps every page its deepest call touched
/// (the server's first requests go deep). Pages more than 4 KiB below
/// the current frame hold nothing live: give them back; the kernel hands
/// out zeroed pages if the stack grows there again.
fn release_unused_stack() {
    const MARGIN: usize = 4 * 1024;
    let here = 0u8;
    let sp = std::ptr::addr_of!(here) as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some((lo, hi)) = maps.lines().find(|l| l.ends_with("[stack]")).and_then(|l| {
        let (range, _) = l.split_once(' ')?;
        let (a, b) = range.split_once('-')?;
        Some((
            usize::from_str_radix(a, 16).ok()?,
            usize::from_str_radix(b, 16).ok()?,
        ))
    }) else {
        return;
    };
    // Only on the main thread's stack (the server's one thread).
    if !(lo..hi).contains(&sp) || sp < lo + MARGIN {
        return;
    }
    let end = (sp - MARGIN) & !4095;
    if end <= lo {
        return;
    }
    // SAFETY: [lo, end) is the part of this thread's stack mapping more
    // than MARGIN below the live frame: no frame, local or borrowed
    // reference points there. MADV_DONTNEED on private anonymous memory
    // only replaces the pages with zero-fill-on-demand ones.
    unsafe {
        libc::madvise(lo as *mut libc::c_void, end - lo, libc::MADV_DONTNEED);
    }
}

pub(crate) fn traced<T>(
    rpc: &'static str,
    id: &str,
    t0: Instant,
    r: Result<T, ShimError>,
) -> ttrpc::Result<T> {
    let us = t0.elapsed().as_micros() as u64;
    trim_when_idle();
    match r {
        Ok(v) => {
            tracing::debug!(rpc, id, us, "ok");
            Ok(v)
        }
        Err(e) => {
            tracing::info!(rpc, id, us, error = %crate::error::chain(&e), "failed");
            Err(e.into())
        }
    }
}

#[async_trait]
impl Sandbox for SandboxService {
    async fn create_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateSandboxRequest,
    ) -> ttrpc::Result<api::CreateSandboxResponse> {
        let t0 = Instant::now();
        let r = async {
            let creq = create_request(&req)?;
            self.pod.sandboxes.create(creq).await?;
            Ok(api::CreateSandboxResponse::new())
        }
        .await;
        traced("CreateSandbox", &req.sandbox_id, t0, r)
    }

    async fn start_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartSandboxRequest,
    ) -> ttrpc::Result<api::StartSandboxResponse> {
        let t0 = Instant::now();
        let r = self
            .pod
            .sandboxes
            .start(&req.sandbox_id)
            .await
            .map_err(ShimError::from)
            .map(|s| {
                let mut resp = api::StartSandboxResponse::new();
                resp.pid = s.pid;
                resp.created_at = MessageField::some(convert::timestamp(s.created_at));
                resp
            });
        release_free_heap();
        traced("StartSandbox", &req.sandbox_id, t0, r)
    }

    async fn platform(
        &self,
        _ctx: &TtrpcContext,
        req: api::PlatformRequest,
    ) -> ttrpc::Result<api::PlatformResponse> {
        let t0 = Instant::now();
        let r = self
            .pod
            .sandboxes
            .platform(&req.sandbox_id)
            .map_err(ShimError::from)
            .map(|p| {
                let mut resp = api::PlatformResponse::new();
                resp.platform = MessageField::some(convert::platform(&p));
                resp
            });
        traced("Platform", &req.sandbox_id, t0, r)
    }

    async fn stop_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::StopSandboxRequest,
    ) -> ttrpc::Result<api::StopSandboxResponse> {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(u64::from(req.timeout_secs));
        // Containers first: their exits are reported before the holder goes.
        let r: Result<_, ShimError> = async {
            self.pod.sandboxes.status(&req.sandbox_id, false)?;
            self.pod.tasks.stop_all(timeout).await?;
            self.pod.sandboxes.stop(&req.sandbox_id, timeout).await?;
            Ok(api::StopSandboxResponse::new())
        }
        .await;
        traced("StopSandbox", &req.sandbox_id, t0, r)
    }

    async fn wait_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitSandboxRequest,
    ) -> ttrpc::Result<api::WaitSandboxResponse> {
        let t0 = Instant::now();
        let r = self
            .pod
            .sandboxes
            .wait(&req.sandbox_id)
            .await
            .map_err(ShimError::from)
            .map(|e| {
                let mut resp = api::WaitSandboxResponse::new();
                resp.exit_status = e.status;
                resp.exited_at = MessageField::some(convert::timestamp(e.at));
                resp
            });
        traced("WaitSandbox", &req.sandbox_id, t0, r)
    }

    async fn sandbox_status(
        &self,
        _ctx: &TtrpcContext,
        req: api::SandboxStatusRequest,
    ) -> ttrpc::Result<api::SandboxStatusResponse> {
        let t0 = Instant::now();
        let r = self
            .pod
            .sandboxes
            .status(&req.sandbox_id, req.verbose)
            .map_err(ShimError::from)
            .map(|s| status_response(&s));
        traced("SandboxStatus", &req.sandbox_id, t0, r)
    }

    async fn ping_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::PingRequest,
    ) -> ttrpc::Result<api::PingResponse> {
        let t0 = Instant::now();
        let r = self
            .pod
            .sandboxes
            .ping(&req.sandbox_id)
            .map_err(ShimError::from)
            .map(|()| api::PingResponse::new());
        traced("PingSandbox", &req.sandbox_id, t0, r)
    }

    async fn shutdown_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::ShutdownSandboxRequest,
    ) -> ttrpc::Result<api::ShutdownSandboxResponse> {
        let t0 = Instant::now();
        let r: Result<_, ShimError> = async {
            if self.pod.sandboxes.status(&req.sandbox_id, false).is_ok() {
                self.pod.tasks.remove_all().await?;
            }
            Ok(self.pod.sandboxes.shutdown(&req.sandbox_id).await?)
        }
        .await;
        if r.is_ok() {
            self.pod.exit_if_empty();
        }
        traced(
            "ShutdownSandbox",
            &req.sandbox_id,
            t0,
            r.map(|_| api::ShutdownSandboxResponse::new()),
        )
    }

    async fn sandbox_metrics(
        &self,
        _ctx: &TtrpcContext,
        req: api::SandboxMetricsRequest,
    ) -> ttrpc::Result<api::SandboxMetricsResponse> {
        let t0 = Instant::now();
        let r = self
            .pod
            .sandboxes
            .metrics(&req.sandbox_id)
            .map_err(ShimError::from)
            .and_then(|m| {
                let data = convert::metrics_any(&m.stats)
                    .map_err(|e| ShimError::Encode(format!("metrics: {e}")))?;
                let mut resp = api::SandboxMetricsResponse::new();
                let metric = resp.metrics.mut_or_insert_default();
                metric.id = m.id;
                metric.timestamp = MessageField::some(convert::timestamp(m.at));
                metric.data = MessageField::some(data);
                Ok(resp)
            });
        traced("SandboxMetrics", &req.sandbox_id, t0, r)
    }
}
