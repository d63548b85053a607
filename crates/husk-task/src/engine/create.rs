//! Create: read the spec, mount the rootfs, open stdio, `runtime create`,
//! watch the init. Every step is undone if a later one fails.

use std::sync::atomic::AtomicBool;

use super::*;
use crate::runtime::CreateOpts;
use crate::stdio::{self, Console};
use crate::types::CreateTask;

impl Tasks {
    /// Creates a container; returns its init's pid.
    pub async fn create(&self, req: CreateTask) -> Result<u32> {
        husk_sandbox::id::validate(&req.id)?;
        if !req.bundle.is_absolute() || !req.bundle.is_dir() {
            return Err(Error::invalid(format!(
                "bundle {} must be an absolute directory",
                req.bundle.display()
            )));
        }
        {
            let mut slots = self.slots();
            if slots.contains_key(&req.id) {
                return Err(Error::AlreadyExists(req.id.clone()));
            }
            slots.insert(req.id.clone(), Slot::Creating);
        }
        let r = self.build(&req).await;
        let mut slots = self.slots();
        match r {
            Ok(c) => {
                let pid = c.init.pid();
                slots.insert(req.id.clone(), Slot::Ready(c));
                Ok(pid)
            }
            Err(e) => {
                slots.remove(&req.id);
                Err(e)
            }
        }
    }

    async fn build(&self, req: &CreateTask) -> Result<Arc<Container>> {
        let spec = crate::spec::load(&req.bundle)?;
        crate::spec::add_pod_mounts(&req.bundle, &req.pod_files)?;
        for m in &req.rootfs {
            if m.kind.is_empty() || m.source.is_empty() {
                return Err(Error::invalid("rootfs mount needs a type and a source"));
            }
        }
        // Written ahead of every step: a shim killed at any point leaves
        // the container in the pod's registry (and a record in its
        // bundle), so `shim delete` reclaims what the steps made. Mount
        // points not yet mounted are fine to unmount.
        let ahead = TaskRecord {
            id: req.id.clone(),
            binary: req.options.binary().to_string(),
            root: req.options.root.clone(),
            systemd_cgroup: req.options.systemd_cgroup,
            mounts: req.rootfs.iter().map(|m| rootfs_target(req, m)).collect(),
            cgroup: spec.cgroup.clone(),
        };
        ahead
            .save(&req.bundle)
            .and_then(|()| self.register(&ahead))?;
        let mut mounts = Vec::new();
        let r = self.build_mounted(req, spec, &mut mounts).await;
        if r.is_err() {
            for m in mounts.iter().rev() {
                let _ = self.host.mounts.unmount(m);
            }
            self.unregister(&req.id);
            let _ = std::fs::remove_file(req.bundle.join(TASK_RECORD));
        }
        r
    }

    async fn build_mounted(
        &self,
        req: &CreateTask,
        mut spec: ContainerSpec,
        mounts: &mut Vec<PathBuf>,
    ) -> Result<Arc<Container>> {
        let id = req.id.as_str();
        if !req.rootfs.is_empty() {
            let rootfs = req.bundle.join("rootfs");
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| Error::invalid(format!("create {}: {e}", rootfs.display())))?;
            for m in &req.rootfs {
                let target = rootfs_target(req, m);
                self.host
                    .mounts
                    .mount(m, &target)
                    .map_err(Error::os(id, "mount rootfs"))?;
                mounts.push(target);
            }
        }
        let runtime = self.runtimes.runtime(&req.options, &req.bundle);
        let terminal = req.io.terminal || spec.terminal;
        let console = if terminal {
            Some(Console::bind(&self.console_dir, &self.console_name())?)
        } else {
            None
        };
        let (stdio, pio) = if terminal {
            (Default::default(), None)
        } else {
            let (s, p) = stdio::open(&req.io, &self.namespace, id).await?;
            (s, Some(p))
        };
        let pid_file = req.bundle.join("init.pid");
        runtime
            .create(CreateOpts {
                id,
                bundle: &req.bundle,
                pid_file: &pid_file,
                console_socket: console.as_ref().map(|c| c.path.as_path()),
                stdio,
            })
            .await
            .map_err(Error::runtime(id, "create"))?;
        // From here the runtime holds a container: undo with a forced delete.
        let undo = |e: Error| {
            let runtime = runtime.clone();
            async move {
                let _ = runtime.delete(id, true).await;
                e
            }
        };
        let pio = match (console, pio) {
            (Some(c), _) => match c.receive().and_then(|m| stdio::attach_terminal(m, &req.io)) {
                Ok(p) => p,
                Err(e) => return Err(undo(e).await),
            },
            (None, Some(p)) => p,
            (None, None) => ProcessIo::default(),
        };
        let pid = match read_pid(&pid_file) {
            Ok(p) => p,
            Err(m) => return Err(undo(Error::invalid(format!("runtime pid file: {m}"))).await),
        };
        let exit = match self.host.procs.watch_child(pid) {
            Ok(f) => f,
            Err(e) => return Err(undo(Error::os(id, "watch init")(e)).await),
        };
        if spec.cgroup.is_none() {
            // No cgroupsPath: the runtime chose one; ask the kernel where.
            let v2 = self.host.cgroups.version() == husk_sandbox::os::CgroupVersion::V2;
            spec.cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .ok()
                .and_then(|t| crate::spec::proc_cgroup(&t, v2));
        }
        let record = TaskRecord {
            id: id.to_string(),
            binary: req.options.binary().to_string(),
            root: req.options.root.clone(),
            systemd_cgroup: req.options.systemd_cgroup,
            mounts: mounts.clone(),
            cgroup: spec.cgroup.clone(),
        };
        if let Err(e) = record
            .save(&req.bundle)
            .and_then(|()| self.register(&record))
        {
            let _ = self.host.procs.signal(pid, libc::SIGKILL);
            return Err(undo(e).await);
        }
        let init = Proc::new("", req.io.clone(), Vec::new());
        init.st().pid = pid;
        *init.pio.lock().await = Some(pio);
        let c = Arc::new(Container {
            id: id.to_string(),
            bundle: req.bundle.clone(),
            runtime,
            spec,
            mounts: mounts.clone(),
            init,
            execs: Mutex::new(HashMap::new()),
            paused: AtomicBool::new(false),
            ops: tokio::sync::Mutex::new(()),
            oom: Mutex::new(None),
        });
        *c.oom.lock().unwrap_or_else(|e| e.into_inner()) = self.watch_oom(&c);
        self.watch_exit(&c, &c.init, exit);
        self.events.publish(TaskEvent::Create {
            container_id: id.to_string(),
            bundle: req.bundle.display().to_string(),
            rootfs: req.rootfs.clone(),
            io: req.io.clone(),
            pid,
        });
        Ok(c)
    }

    /// OOM events for the container's memory cgroup, where it has one.
    fn watch_oom(&self, c: &Arc<Container>) -> Option<OomWatch> {
        let cg = c.spec.cgroup.as_ref()?;
        let version = self.host.cgroups.version();
        let dir = self.host.cgroups.host_paths(cg).into_iter().find(|p| {
            version == husk_sandbox::os::CgroupVersion::V2
                || p.components().any(|c| c.as_os_str() == "memory")
        })?;
        let events = self.events.clone();
        let id = c.id.clone();
        match crate::oom::watch(version, &dir, move || {
            events.publish(TaskEvent::Oom {
                container_id: id.clone(),
            })
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::debug!(id = %c.id, dir = %dir.display(), error = %e, "no OOM watch");
                None
            }
        }
    }
}

/// Where a rootfs mount of the container goes: under `<bundle>/rootfs`.
fn rootfs_target(req: &CreateTask, m: &husk_sandbox::Mount) -> PathBuf {
    req.bundle
        .join("rootfs")
        .join(m.target.trim_start_matches('/'))
}
