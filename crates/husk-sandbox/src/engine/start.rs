//! StartSandbox: clone the holder into the pod's namespaces.

use super::*;

impl Engine {
    pub async fn start(&self, id: &str) -> Result<Started> {
        let sb = self.get(id)?;
        let _op = sb.ops.lock().await;
        let spec = {
            let rec = sb.rec();
            match rec.phase {
                Phase::Running => {
                    return Ok(Started {
                        pid: rec.pid,
                        created_at: to_time(rec.created_at),
                    })
                }
                Phase::Stopped => {
                    return Err(Error::precondition(id, "is stopped; it cannot start again"))
                }
                Phase::Created => {}
            }
            self.holder_spec(&rec)
        };
        let (pid, exit) = self
            .host
            .procs
            .spawn_holder(&spec)
            .await
            .map_err(Error::os(id, "start pod holder"))?;
        let pid_start = self.host.procs.start_time(pid).unwrap_or(0);
        let saved = {
            let mut rec = sb.rec();
            rec.phase = Phase::Running;
            rec.pid = pid;
            rec.pid_start = pid_start;
            let r = self.store.save(&rec);
            (r, to_time(rec.created_at))
        };
        self.watch_exit(&sb, exit);
        match saved {
            (Ok(()), created_at) => Ok(Started { pid, created_at }),
            (Err(e), _) => {
                // Without a record nobody could clean up after us: undo the start.
                let _ = self.host.procs.signal(pid, libc::SIGKILL);
                Err(e)
            }
        }
    }

    fn holder_spec(&self, rec: &Record) -> HolderSpec {
        let (join_netns, new_net) = match &rec.network {
            Network::Join(p) => (Some(p.clone()), false),
            Network::New => (None, true),
            Network::Host => (None, false),
        };
        let new_uts = rec.network != Network::Host;
        HolderSpec {
            join_netns,
            new_net,
            new_uts,
            new_ipc: rec.pod.ipc == NsMode::Pod,
            new_pid: rec.pod.pid == NsMode::Pod,
            hostname: new_uts.then(|| rec.hostname.clone()),
            sysctls: rec
                .pod
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cgroup_join: self.host.cgroups.join_files(&rec.cgroup),
            clone_into: self.host.cgroups.birth_cgroup(&rec.cgroup),
        }
    }

    /// Records the holder's exit when it happens, and wakes every waiter.
    fn watch_exit(&self, sb: &Arc<Sandbox>, exit: BoxFuture<'static, u32>) {
        let sb = sb.clone();
        let store = self.store.clone();
        tokio::spawn(async move {
            let status = exit.await;
            record_exit(&sb, &store, status);
        });
    }
}
