//! CreateSandbox: validate everything, then make the pod cgroup, rootfs
//! mounts and pod files, undoing each step if a later one fails.

use super::reclaim::{remove_dir, remove_file};
use super::*;

impl Engine {
    pub async fn create(&self, req: CreateRequest) -> Result<()> {
        crate::id::validate(&req.id)?;
        let network = self.validate(&req)?;
        let cgroup_rel = cgroup::pod_path(&req.pod.cgroup_parent, &req.id)?;
        {
            let mut slots = self.slots();
            if slots.contains_key(&req.id) {
                return Err(Error::AlreadyExists(req.id.clone()));
            }
            slots.insert(req.id.clone(), Slot::Creating);
        }
        let result = self.build(&req, network, cgroup_rel);
        let mut slots = self.slots();
        match result {
            Ok(rec) => {
                slots.insert(req.id.clone(), Slot::Ready(Sandbox::new(rec)));
                self.gone
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&req.id);
                Ok(())
            }
            Err(e) => {
                slots.remove(&req.id);
                Err(e)
            }
        }
    }

    fn validate(&self, req: &CreateRequest) -> Result<Network> {
        let bundle = &req.bundle;
        if !bundle.is_absolute() {
            return Err(Error::invalid(format!(
                "bundle_path {} must be absolute",
                bundle.display()
            )));
        }
        if !bundle.is_dir() {
            return Err(Error::invalid(format!(
                "bundle_path {} is not a directory",
                bundle.display()
            )));
        }
        let network = req.network()?;
        if let Network::Join(p) = &network {
            if !p.is_absolute() {
                return Err(Error::invalid(format!(
                    "netns_path {} must be absolute",
                    p.display()
                )));
            }
            self.host
                .mounts
                .check_netns(p)
                .map_err(|e| Error::invalid(format!("netns_path: {e}: {}", source_msg(&e))))?;
        }
        check_hostname(&req.pod.hostname)?;
        if network == Network::Host && !req.pod.hostname.is_empty() {
            // The pod shares the host's UTS namespace; setting a name would rename the host.
            tracing::debug!(id = %req.id, "hostname ignored for a host-network pod");
        }
        if let Some(dns) = &req.pod.dns {
            podfiles::check_dns(dns)?;
        }
        for (k, v) in &req.pod.sysctls {
            check_sysctl(k, v, &network)?;
        }
        for m in &req.rootfs {
            if m.kind.is_empty() || m.source.is_empty() {
                return Err(Error::invalid("rootfs mount needs a type and a source"));
            }
            if !safe_relative(&m.target) {
                return Err(Error::invalid(format!(
                    "rootfs mount target {:?} must stay inside the rootfs",
                    m.target
                )));
            }
        }
        Ok(network)
    }

    /// Makes the sandbox's cgroup, mounts and pod files, and persists its
    /// record. On failure everything made so far is undone.
    fn build(&self, req: &CreateRequest, network: Network, cgroup_rel: PathBuf) -> Result<Record> {
        let mut undo = Vec::new();
        let result = self.build_steps(req, network, cgroup_rel, &mut undo);
        match result {
            Ok(rec) => Ok(rec),
            Err(primary) => match self.run_undo(undo) {
                Ok(()) => Err(primary),
                Err(cleanup) => Err(Error::CleanupFailed {
                    id: req.id.clone(),
                    action: "create",
                    primary: Box::new(primary),
                    cleanup,
                }),
            },
        }
    }

    fn build_steps(
        &self,
        req: &CreateRequest,
        network: Network,
        cgroup_rel: PathBuf,
        undo: &mut Vec<Undo>,
    ) -> Result<Record> {
        let id = req.id.as_str();
        // Written ahead: a shim killed at any step below leaves a record
        // naming everything the steps may make (the cgroup's leaf, every
        // mount point and pod file), so `shim delete` removes it all. Each
        // is removed only if there: a missing one is fine.
        let ahead = Record {
            mounts: req
                .rootfs
                .iter()
                .map(|m| req.bundle.join("rootfs").join(&m.target))
                .chain((req.pod.ipc == NsMode::Pod).then(|| req.bundle.join("shm")))
                .collect(),
            files: (!req.rootfs.is_empty())
                .then(|| req.bundle.join("rootfs"))
                .into_iter()
                .chain(POD_FILES.iter().map(|f| req.bundle.join(f)))
                .chain((req.pod.ipc == NsMode::Pod).then(|| req.bundle.join("shm")))
                .collect(),
            ..self.new_record(req, network.clone(), cgroup_rel.clone())
        };
        self.store.save(&ahead)?;
        undo.push(Undo::State(id.to_string()));

        let created = self
            .host
            .cgroups
            .create(&cgroup_rel)
            .map_err(Error::os(id, "create pod cgroup"))?;
        undo.push(Undo::Cgroup(created.clone()));

        let mut rec = Record {
            cgroup_created: created,
            ..self.new_record(req, network, cgroup_rel)
        };

        if !req.rootfs.is_empty() {
            let rootfs = req.bundle.join("rootfs");
            if make_dir(&rootfs).map_err(|e| {
                Error::os(id, "create rootfs dir")(OsError::path("mkdir", &rootfs, e))
            })? {
                undo.push(Undo::Dir(rootfs.clone()));
                rec.files.push(rootfs.clone());
            }
            for m in &req.rootfs {
                let target = rootfs.join(&m.target);
                self.host
                    .mounts
                    .mount(m, &target)
                    .map_err(Error::os(id, "mount rootfs"))?;
                undo.push(Undo::Mount(target.clone()));
                rec.mounts.push(target);
            }
        }

        let files = [
            format!("{}\n", rec.hostname),
            podfiles::hosts(&rec.network),
            podfiles::resolv_conf(req.pod.dns.as_ref()),
        ];
        let files = POD_FILES.iter().zip(files);
        for (name, content) in files {
            let path = req.bundle.join(name);
            fs::write(&path, content.as_bytes())
                .map_err(|e| Error::os(id, "write pod file")(OsError::path("write", &path, e)))?;
            undo.push(Undo::File(path.clone()));
            rec.files.push(path);
        }

        if req.pod.ipc == NsMode::Pod {
            let shm = req.bundle.join("shm");
            if make_dir(&shm)
                .map_err(|e| Error::os(id, "create shm dir")(OsError::path("mkdir", &shm, e)))?
            {
                undo.push(Undo::Dir(shm.clone()));
                rec.files.push(shm.clone());
            }
            self.host
                .mounts
                .mount_shm(&shm)
                .map_err(Error::os(id, "mount shm"))?;
            undo.push(Undo::Mount(shm.clone()));
            rec.mounts.push(shm);
        }

        self.store.save(&rec)?;
        Ok(rec)
    }

    /// A fresh record of `req`, with nothing made yet.
    fn new_record(&self, req: &CreateRequest, network: Network, cgroup: PathBuf) -> Record {
        Record {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            hostname: podfiles::hostname(&req.pod, &req.id, &network),
            network,
            pod: req.pod.clone(),
            rootfs: req.rootfs.clone(),
            cgroup,
            cgroup_version: self.host.cgroups.version(),
            cgroup_created: Vec::new(),
            mounts: Vec::new(),
            files: Vec::new(),
            phase: Phase::Created,
            pid: 0,
            pid_start: 0,
            created_at: now_nanos(),
            exited_at: None,
            exit_status: None,
        }
    }

    fn run_undo(&self, undo: Vec<Undo>) -> std::result::Result<(), OsError> {
        let mut first_err = None;
        for step in undo.into_iter().rev() {
            let r = match step {
                Undo::Cgroup(dirs) => self.host.cgroups.remove(&dirs),
                Undo::Mount(p) => self.host.mounts.unmount(&p),
                Undo::File(p) => remove_file(&p),
                Undo::Dir(p) => remove_dir(&p),
                Undo::State(id) => self
                    .store
                    .remove(&id)
                    .map_err(|e| OsError::sys("remove state", io::Error::other(e.to_string()))),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// The files CreateSandbox writes into the bundle.
const POD_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// Undo steps of a half-done CreateSandbox, run in reverse on failure.
enum Undo {
    Cgroup(Vec<PathBuf>),
    Mount(PathBuf),
    File(PathBuf),
    Dir(PathBuf),
    State(String),
}

fn source_msg(e: &OsError) -> String {
    std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn safe_relative(target: &str) -> bool {
    Path::new(target).components().all(|c| {
        matches!(
            c,
            Component::Normal(_) | Component::CurDir | Component::RootDir
        )
    })
}

/// Creates `dir`; returns whether it was created (false: it existed).
fn make_dir(dir: &Path) -> io::Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}
