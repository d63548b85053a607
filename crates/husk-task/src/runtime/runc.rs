//! runc's command line, run as async children (tokio::process): create
//! with `--pid-file`, start, exec with a process file, kill, delete,
//! pause, resume, update. Errors come from runc's JSON log.
//!
//! Why not rust-extensions' `runc` crate: see docs/ARCHITECTURE.md (it
//! pulls a second async stack and its IO types around the same exec).

use std::path::{Path, PathBuf};
use std::process::Stdio as StdStdio;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{CreateOpts, ExecOpts, OciRuntime, RuntimeError, Stdio};

pub struct Runc {
    pub binary: String,
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    /// runc's `--log` file (JSON lines), read back for error messages.
    pub log: PathBuf,
}

fn stdio(fd: Option<std::os::fd::OwnedFd>) -> StdStdio {
    fd.map(StdStdio::from).unwrap_or_else(StdStdio::null)
}

impl Runc {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c.arg("--log").arg(&self.log).args(["--log-format", "json"]);
        if self.systemd_cgroup {
            c.arg("--systemd-cgroup");
        }
        c.kill_on_drop(false);
        c
    }

    /// The last error runc logged, else its stderr, else its exit status.
    fn message(&self, stderr: &[u8], status: std::process::ExitStatus) -> String {
        let logged = std::fs::read_to_string(&self.log).ok().and_then(|s| {
            s.lines().rev().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v.get("level")?.as_str()? == "error")
                    .then(|| v.get("msg")?.as_str().map(str::to_string))?
            })
        });
        let err = String::from_utf8_lossy(stderr).trim().to_string();
        logged
            .or((!err.is_empty()).then_some(err))
            .unwrap_or_else(|| status.to_string())
    }

    /// Runs a command whose stdio the runtime does not hand on, capturing
    /// stderr for the message.
    async fn run(
        &self,
        command: &'static str,
        mut c: Command,
        input: Option<&[u8]>,
    ) -> Result<(), RuntimeError> {
        c.stdin(if input.is_some() {
            StdStdio::piped()
        } else {
            StdStdio::null()
        })
        .stdout(StdStdio::null())
        .stderr(StdStdio::piped());
        let mut child = c.spawn().map_err(|source| RuntimeError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            let _ = stdin.write_all(data).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| RuntimeError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        self.check(command, &out.stderr, out.status)
    }

    /// Runs a command that hands `io` to the process it starts; runc's own
    /// complaints go to its log.
    async fn run_with_stdio(
        &self,
        command: &'static str,
        mut c: Command,
        io: Stdio,
    ) -> Result<(), RuntimeError> {
        c.stdin(stdio(io.stdin))
            .stdout(stdio(io.stdout))
            .stderr(stdio(io.stderr));
        let mut child = c.spawn().map_err(|source| RuntimeError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        // Our copies of the fds must close now: they belong to the process.
        drop(c);
        let status = child.wait().await.map_err(|source| RuntimeError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        self.check(command, b"", status)
    }

    fn check(
        &self,
        command: &'static str,
        stderr: &[u8],
        status: std::process::ExitStatus,
    ) -> Result<(), RuntimeError> {
        if status.success() {
            Ok(())
        } else {
            Err(RuntimeError::Failed {
                binary: self.binary.clone(),
                command,
                message: self.message(stderr, status),
            })
        }
    }
}

fn console(c: &mut Command, socket: Option<&Path>) {
    if let Some(s) = socket {
        c.arg("--console-socket").arg(s);
    }
}

#[async_trait]
impl OciRuntime for Runc {
    async fn create(&self, o: CreateOpts<'_>) -> Result<(), RuntimeError> {
        let mut c = self.command();
        c.arg("create").arg("--bundle").arg(o.bundle);
        c.arg("--pid-file").arg(o.pid_file);
        console(&mut c, o.console_socket);
        c.arg(o.id);
        self.run_with_stdio("create", c, o.stdio).await
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut c = self.command();
        c.args(["start", id]);
        self.run("start", c, None).await
    }

    async fn exec(&self, o: ExecOpts<'_>) -> Result<(), RuntimeError> {
        let mut c = self.command();
        c.arg("exec")
            .arg("--detach")
            .arg("--process")
            .arg(o.process);
        c.arg("--pid-file").arg(o.pid_file);
        console(&mut c, o.console_socket);
        c.arg(o.id);
        self.run_with_stdio("exec", c, o.stdio).await
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        let mut c = self.command();
        c.arg("kill");
        if all {
            c.arg("--all");
        }
        c.arg(id).arg(signal.to_string());
        self.run("kill", c, None).await
    }

    /// runc keeps a container's state in `<root>/<id>/`.
    fn forget(&self, id: &str) {
        if husk_sandbox::id::validate(id).is_ok() {
            let _ = std::fs::remove_dir_all(self.root.join(id));
        }
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut c = self.command();
        c.arg("delete");
        if force {
            c.arg("--force");
        }
        c.arg(id);
        self.run("delete", c, None).await
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        let mut c = self.command();
        c.args(["pause", id]);
        self.run("pause", c, None).await
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        let mut c = self.command();
        c.args(["resume", id]);
        self.run("resume", c, None).await
    }

    async fn update(&self, id: &str, resources: &[u8]) -> Result<(), RuntimeError> {
        let mut c = self.command();
        c.args(["update", "--resources", "-", id]);
        self.run("update", c, Some(resources)).await
    }
}
