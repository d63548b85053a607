//! Start (init or exec) and Exec (register an exec process).

use super::*;
use crate::runtime::ExecOpts;
use crate::stdio::{self, Console};
use crate::types::ExecTask;

impl Tasks {
    /// Starts the container's init, or a registered exec; returns its pid.
    pub async fn start(&self, id: &str, exec_id: &str) -> Result<u32> {
        let c = self.get(id)?;
        if !exec_id.is_empty() {
            return self.start_exec(&c, exec_id).await;
        }
        let _op = c.ops.lock().await;
        let _order = c.init.order.lock().await;
        let phase = c.init.phase();
        if !phase.can_start() {
            return Err(Error::precondition(
                id,
                format!("is {phase:?}; only a created container starts"),
            ));
        }
        c.runtime
            .start(id)
            .await
            .map_err(Error::runtime(id, "start"))?;
        let pid = {
            let mut st = c.init.st();
            st.phase = Phase::Running;
            st.pid
        };
        self.events.publish(TaskEvent::Start {
            container_id: id.to_string(),
            pid,
        });
        Ok(pid)
    }

    /// Registers an exec process; Start runs it.
    pub async fn exec(&self, req: ExecTask) -> Result<()> {
        let c = self.get(&req.id)?;
        husk_sandbox::id::validate(&req.exec_id)?;
        crate::spec::check_process(&req.process)?;
        if c.init.phase() != Phase::Running {
            return Err(Error::precondition(
                &req.id,
                "is not running; exec needs a running container",
            ));
        }
        {
            let mut execs = c.execs();
            if execs.contains_key(&req.exec_id) {
                return Err(Error::AlreadyExists(format!("{}/{}", req.id, req.exec_id)));
            }
            execs.insert(
                req.exec_id.clone(),
                Proc::new(&req.exec_id, req.io.clone(), req.process.clone()),
            );
        }
        self.events.publish(TaskEvent::ExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
        });
        Ok(())
    }

    async fn start_exec(&self, c: &Arc<Container>, exec_id: &str) -> Result<u32> {
        let p = c.process(exec_id)?;
        let _order = p.order.lock().await;
        if !p.phase().can_start() {
            return Err(Error::precondition(
                &format!("{}/{exec_id}", c.id),
                "was started already",
            ));
        }
        if c.init.phase() != Phase::Running {
            return Err(Error::precondition(&c.id, "is not running"));
        }
        let id = c.id.as_str();
        let process_file = c.bundle.join(format!("{exec_id}.process.json"));
        let pid_file = c.bundle.join(format!("{exec_id}.pid"));
        let r = self.run_exec(c, &p, &process_file, &pid_file).await;
        let _ = std::fs::remove_file(&process_file);
        let _ = std::fs::remove_file(&pid_file);
        let (pid, exit) = match r {
            Ok(v) => v,
            Err(e) => {
                // It never ran: it is over, with the status runc uses.
                p.st().phase = Phase::Stopped;
                p.exit.send_replace(Some(Exit {
                    status: 255,
                    at: SystemTime::now(),
                }));
                return Err(e);
            }
        };
        {
            let mut st = p.st();
            st.pid = pid;
            st.phase = Phase::Running;
        }
        self.watch_exit(c, &p, exit);
        self.events.publish(TaskEvent::ExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid,
        });
        Ok(pid)
    }

    async fn run_exec(
        &self,
        c: &Arc<Container>,
        p: &Arc<Proc>,
        process_file: &Path,
        pid_file: &Path,
    ) -> Result<(u32, BoxFuture<'static, u32>)> {
        let id = c.id.as_str();
        std::fs::write(process_file, &p.process)
            .map_err(|e| Error::invalid(format!("{}: {e}", process_file.display())))?;
        let console = if p.io.terminal {
            Some(Console::bind(&self.console_dir, &self.console_name())?)
        } else {
            None
        };
        let (stdio, pio) = if p.io.terminal {
            (Default::default(), None)
        } else {
            let (s, io) = stdio::open(&p.io, &self.namespace, id).await?;
            (s, Some(io))
        };
        c.runtime
            .exec(ExecOpts {
                id,
                process: process_file,
                pid_file,
                console_socket: console.as_ref().map(|c| c.path.as_path()),
                stdio,
            })
            .await
            .map_err(Error::runtime(id, "exec"))?;
        let pio = match (console, pio) {
            (Some(con), _) => stdio::attach_terminal(con.receive()?, &p.io)?,
            (None, Some(io)) => io,
            (None, None) => ProcessIo::default(),
        };
        let pid = read_pid(pid_file).map_err(|m| Error::invalid(format!("exec pid file: {m}")))?;
        let exit = self
            .host
            .procs
            .watch_child(pid)
            .map_err(Error::os(id, "watch exec"))?;
        *p.pio.lock().await = Some(pio);
        Ok((pid, exit))
    }
}
