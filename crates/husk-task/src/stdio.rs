//! A process's stdio, as containerd names it:
//! - FIFO paths (CRI's default): stdout and stderr FIFOs go to the process
//!   directly, zero-copy; the engine keeps its own read-write handle on
//!   each until the process exits, so a restarting containerd (no reader
//!   for a while) never makes the process see EPIPE, and output resumes
//!   when it reopens the FIFOs. stdin goes through a pipe the engine feeds,
//!   so CloseIO can end it.
//! - `file:///path`: appended to directly.
//! - `binary:///path?args`: a logging program reads the output on fds 3
//!   and 4 and closes fd 5 once ready (containerd's binary IO protocol).
//! - A terminal: the runtime hands over the pty master through a console
//!   socket; the engine copies between it and the FIFOs and resizes it.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::runtime::Stdio;
use crate::types::IoPaths;

/// How long a terminal's output may take to drain after its process exits
/// (a background process may hold the pty open).
const TTY_DRAIN: Duration = Duration::from_secs(2);

/// What the engine holds of a live process's IO.
#[derive(Default)]
pub struct ProcessIo {
    /// Feeds the process's stdin; aborting it closes stdin (CloseIO).
    stdin: Option<JoinHandle<()>>,
    /// Copies terminal output; awaited at exit so nothing is lost.
    output: Vec<JoinHandle<()>>,
    /// Read-write handles on output FIFOs, closed at exit.
    keep: Vec<OwnedFd>,
    /// The output FIFOs written, to wait for their reader at exit.
    fifos: Vec<PathBuf>,
    /// The pty master, for resize.
    console: Option<OwnedFd>,
    /// binary:// loggers, awaited at exit.
    loggers: Vec<JoinHandle<()>>,
}

impl ProcessIo {
    pub fn close_stdin(&mut self) {
        if let Some(t) = self.stdin.take() {
            t.abort();
        }
    }

    pub fn has_console(&self) -> bool {
        self.console.is_some()
    }

    /// Called once the process has exited: lets terminal output and
    /// loggers finish, then closes everything the engine held.
    pub async fn drain(&mut self) {
        self.close_stdin();
        for t in self.output.drain(..) {
            let abort = t.abort_handle();
            if tokio::time::timeout(TTY_DRAIN, t).await.is_err() {
                abort.abort();
            }
        }
        // A process that exits at once (an exec of `true`) may be done
        // before containerd's reader has opened the FIFO: with every writer
        // closed by then, its open would wait forever and ExecSync with it.
        // So the last writer stays until a reader is there (bounded).
        let kept: Vec<(OwnedFd, PathBuf)> = self.keep.drain(..).zip(self.fifos.drain(..)).collect();
        for (rw, path) in kept {
            hand_over(rw, &path, READER_WAIT).await;
        }
        self.keep.clear();
        self.console = None;
        for t in self.loggers.drain(..) {
            let abort = t.abort_handle();
            if tokio::time::timeout(TTY_DRAIN, t).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Sets the terminal's size (TIOCSWINSZ on the pty master).
    pub fn resize(&self, width: u32, height: u32) -> io::Result<()> {
        let Some(m) = &self.console else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no terminal"));
        };
        let ws = libc::winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize struct from a valid pointer;
        // the fd is the pty master we own.
        let r = unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        self.close_stdin();
        for t in self.output.drain(..).chain(self.loggers.drain(..)) {
            t.abort();
        }
    }
}

enum Target {
    None,
    Fifo(PathBuf),
    File(PathBuf),
    Binary(PathBuf, Vec<String>),
}

fn parse(uri: &str) -> Result<Target> {
    if uri.is_empty() {
        return Ok(Target::None);
    }
    let (scheme, rest) = match uri.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("fifo", uri),
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(Error::invalid(format!(
            "stdio {uri:?}: path must be absolute"
        )));
    }
    match scheme {
        "fifo" => Ok(Target::Fifo(path)),
        "file" => Ok(Target::File(path)),
        "binary" => {
            let args = query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .flat_map(|kv| match kv.split_once('=') {
                    Some((k, "")) => vec![k.to_string()],
                    Some((k, v)) => vec![k.to_string(), v.to_string()],
                    None => vec![kv.to_string()],
                })
                .collect();
            Ok(Target::Binary(path, args))
        }
        other => Err(Error::invalid(format!(
            "stdio {uri:?}: unknown scheme {other:?}"
        ))),
    }
}

fn io_err<'a>(what: &str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    let what = what.to_string();
    move |e| Error::invalid(format!("{what} {}: {e}", path.display()))
}

/// How long a process's exit waits for the reader of its output FIFO.
const READER_WAIT: Duration = Duration::from_secs(10);

/// Lets go of an output FIFO once it has a reader. `rw`, the engine's
/// read-write handle, counts as a reader itself, so it is traded for a
/// write-only one first; with that as the only writer, poll(2) reports
/// POLLERR while no reader is open. Once one is (or after `limit`, or if
/// the FIFO is gone), the writer closes and the reader sees what is left
/// in the pipe, then EOF.
async fn hand_over(rw: OwnedFd, path: &Path, limit: Duration) {
    let w = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    drop(rw);
    let Ok(w) = w else { return };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&w),
            nix::poll::PollFlags::POLLOUT,
        )];
        let polled = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok();
        let no_reader = polled
            && fds[0]
                .revents()
                .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLERR));
        if !no_reader || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A FIFO opened read-write: never blocks, never sees EPIPE.
fn open_fifo(path: &Path) -> Result<OwnedFd> {
    let meta = std::fs::metadata(path).map_err(io_err("stdio fifo", path))?;
    if !meta.file_type().is_fifo() {
        return Err(Error::invalid(format!(
            "stdio {}: not a FIFO",
            path.display()
        )));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err("open stdio fifo", path))?;
    Ok(f.into())
}

fn open_file(path: &Path) -> Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err("create stdio dir", dir))?;
    }
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err("open stdio file", path))?;
    Ok(f.into())
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::invalid(format!("pipe2: {e}")))
}

/// Opens a non-terminal process's stdio. Returns what the runtime hands
/// to the process and what the engine keeps.
pub async fn open(io: &IoPaths, ns: &str, id: &str) -> Result<(Stdio, ProcessIo)> {
    let mut pio = ProcessIo::default();
    let mut stdio = Stdio::default();
    if !io.stdin.is_empty() {
        let (rd, wr) = pipe_pair()?;
        pio.stdin = Some(feed_stdin(&io.stdin, wr)?);
        stdio.stdin = Some(rd);
    }
    let out = parse(&io.stdout)?;
    let err = parse(&io.stderr)?;
    if let (Target::Binary(bin, args), _) | (Target::None, Target::Binary(bin, args)) = (&out, &err)
    {
        let (o, e) = spawn_logger(bin, args, ns, id, &mut pio).await?;
        stdio.stdout = Some(o);
        stdio.stderr = Some(e);
        return Ok((stdio, pio));
    }
    stdio.stdout = output(out, &mut pio)?;
    stdio.stderr = output(err, &mut pio)?;
    Ok((stdio, pio))
}

fn output(t: Target, pio: &mut ProcessIo) -> Result<Option<OwnedFd>> {
    match t {
        Target::None => Ok(None),
        Target::Fifo(p) => {
            let fd = open_fifo(&p)?;
            let give = fd
                .try_clone()
                .map_err(|e| Error::invalid(format!("dup stdio: {e}")))?;
            pio.keep.push(fd);
            pio.fifos.push(p);
            Ok(Some(give))
        }
        Target::File(p) => open_file(&p).map(Some),
        Target::Binary(..) => Err(Error::invalid(
            "binary:// for one of stdout/stderr only is not supported",
        )),
    }
}

/// Copies the stdin FIFO into the pipe the process reads. The FIFO is
/// opened read-write so that no writer yet is not an end of input.
fn feed_stdin(path: &str, wr: OwnedFd) -> Result<JoinHandle<()>> {
    let p = match parse(path)? {
        Target::Fifo(p) => p,
        _ => return Err(Error::invalid(format!("stdin {path:?}: must be a FIFO"))),
    };
    let mut rx = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&p)
        .map_err(io_err("open stdin fifo", &p))?;
    let mut tx =
        pipe::Sender::from_owned_fd(wr).map_err(|e| Error::invalid(format!("stdin pipe: {e}")))?;
    Ok(tokio::spawn(async move {
        let _ = tokio::io::copy(&mut rx, &mut tx).await;
    }))
}

/// containerd's binary IO: the logger reads stdout on fd 3 and stderr on
/// fd 4 and closes fd 5 when it is ready.
async fn spawn_logger(
    bin: &Path,
    args: &[String],
    ns: &str,
    id: &str,
    pio: &mut ProcessIo,
) -> Result<(OwnedFd, OwnedFd)> {
    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = pipe_pair()?;
    let (ready_r, ready_w) = pipe_pair()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut c = tokio::process::Command::new(bin);
    c.args(args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", ns)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and calls
    // only fcntl and dup2, which are async-signal-safe; the fds are open in
    // the parent (and so in the child) until after spawn returns.
    unsafe {
        c.pre_exec(move || {
            // First move every source above 3..=5, so that placing one
            // cannot overwrite another that happens to sit there.
            let mut high = [0; 3];
            for (h, fd) in high.iter_mut().zip(fds) {
                *h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                if *h < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = c
        .spawn()
        .map_err(|e| Error::invalid(format!("binary logger {}: {e}", bin.display())))?;
    drop((out_r, err_r, ready_w));
    // Wait for the logger to say it is ready (it closes fd 5).
    let ready =
        pipe::Receiver::from_owned_fd(ready_r).map_err(|e| Error::invalid(format!("{e}")))?;
    let mut buf = [0u8; 16];
    loop {
        if ready.readable().await.is_err() {
            break;
        }
        match ready.try_read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    pio.loggers.push(tokio::spawn(async move {
        let _ = child.wait().await;
    }));
    Ok((out_w, err_w))
}

/// A console socket the runtime sends a terminal's pty master over.
pub struct Console {
    listener: UnixListener,
    pub path: PathBuf,
}

impl Console {
    /// Binds a socket in `dir` (kept short for sun_path).
    pub fn bind(dir: &Path, name: &str) -> Result<Console> {
        std::fs::create_dir_all(dir).map_err(io_err("create console dir", dir))?;
        let path = dir.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(io_err("bind console socket", &path))?;
        Ok(Console { listener, path })
    }

    /// Takes the pty master the runtime sent (it has, once the runtime's
    /// create or exec returned).
    pub fn receive(&self) -> Result<OwnedFd> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::FromRawFd;
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::invalid(format!(
                "console socket {}: {what}: {e}",
                self.path.display()
            ))
        };
        self.listener
            .set_nonblocking(true)
            .map_err(|e| fail("nonblocking", &e))?;
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| fail("the runtime sent no terminal", &e))?;
        // The runtime sent the fd before its create or exec returned; never
        // wait on the server's thread for one that did not come.
        stream
            .set_nonblocking(true)
            .map_err(|e| fail("nonblocking", &e))?;
        let mut buf = [0u8; 4096];
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| fail("recvmsg", &e))?;
        let cmsgs = msg.cmsgs().map_err(|e| fail("cmsgs", &e))?;
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(fd) = fds.first() {
                    // SAFETY: SCM_RIGHTS just gave this process a new fd
                    // that nothing else owns.
                    return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
        }
        Err(fail("no fd in message", &"empty"))
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Wires a terminal: pty master output to the stdout FIFO (or file),
/// stdin FIFO into the master.
pub fn attach_terminal(master: OwnedFd, io: &IoPaths) -> Result<ProcessIo> {
    let mut pio = ProcessIo::default();
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| Error::invalid(format!("dup pty master: {e}")))
    };
    match parse(&io.stdout)? {
        Target::None => {}
        Target::Fifo(p) | Target::File(p) => {
            let mut rx = pipe::Receiver::from_owned_fd_unchecked(dup(&master)?)
                .map_err(|e| Error::invalid(format!("pty master: {e}")))?;
            let out: OwnedFd = if p.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
                open_fifo(&p)?
            } else {
                open_file(&p)?
            };
            let mut tx = pipe::Sender::from_owned_fd_unchecked(out)
                .map_err(|e| Error::invalid(format!("terminal output: {e}")))?;
            pio.output.push(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut rx, &mut tx).await;
            }));
        }
        Target::Binary(..) => {
            return Err(Error::invalid("binary:// with a terminal is not supported"))
        }
    }
    if !io.stdin.is_empty() {
        let Target::Fifo(p) = parse(&io.stdin)? else {
            return Err(Error::invalid("terminal stdin must be a FIFO"));
        };
        let mut rx = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&p)
            .map_err(io_err("open stdin fifo", &p))?;
        let mut tx = pipe::Sender::from_owned_fd_unchecked(dup(&master)?)
            .map_err(|e| Error::invalid(format!("pty master: {e}")))?;
        pio.stdin = Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut rx, &mut tx).await;
        }));
    }
    pio.console = Some(master);
    Ok(pio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert!(matches!(parse("").unwrap(), Target::None));
        assert!(matches!(parse("/run/x/stdout").unwrap(), Target::Fifo(_)));
        assert!(matches!(
            parse("file:///var/log/x").unwrap(),
            Target::File(_)
        ));
        match parse("binary:///usr/bin/logger?a=1&b").unwrap() {
            Target::Binary(p, args) => {
                assert_eq!(p, PathBuf::from("/usr/bin/logger"));
                assert_eq!(args, vec!["a", "1", "b"]);
            }
            _ => panic!("not binary"),
        }
        assert!(parse("relative").is_err());
        assert!(parse("tcp://x").is_err());
    }

    #[tokio::test]
    async fn fifo_output_is_direct_and_closes_at_drain() {
        use std::io::{Read, Write};
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let io = IoPaths {
            stdout: fifo.display().to_string(),
            ..Default::default()
        };
        let (stdio, mut pio) = open(&io, "ns", "c1").await.unwrap();
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let mut w = std::fs::File::from(stdio.stdout.unwrap());
        w.write_all(b"hello\n").unwrap();
        drop(w);
        pio.drain().await;
        let mut s = String::new();
        reader.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello\n", "all output arrives, then EOF");
    }

    /// Soak regression (one ExecSync in ~2,000 hung for good): the exec
    /// wrote and exited before containerd's reader had opened the FIFO;
    /// the engine closed the last writer, and the reader's blocking open
    /// never returned. Drain now waits for the reader.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_that_opens_after_the_exit_still_gets_output_and_eof() {
        use std::io::{Read, Write};
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let io = IoPaths {
            stdout: fifo.display().to_string(),
            ..Default::default()
        };
        let (stdio, mut pio) = open(&io, "ns", "e1").await.unwrap();
        let mut w = std::fs::File::from(stdio.stdout.unwrap());
        w.write_all(b"done\n").unwrap();
        drop(w); // the process has exited
        let drain = tokio::spawn(async move { pio.drain().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The reader comes late, with a blocking open as containerd's.
        let path = fifo.clone();
        let read = std::thread::spawn(move || {
            let mut s = String::new();
            std::fs::File::open(path)
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            s
        });
        drain.await.unwrap();
        assert_eq!(read.join().unwrap(), "done\n", "output, then EOF");
    }

    #[tokio::test]
    async fn a_fifo_nobody_reads_delays_the_exit_at_most_the_bound() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let rw = open_fifo(&fifo).unwrap();
        let t0 = std::time::Instant::now();
        hand_over(rw, &fifo, Duration::from_millis(100)).await;
        assert!(t0.elapsed() >= Duration::from_millis(100));
        // Gone: no wait at all.
        let rw = open_fifo(&fifo).unwrap();
        std::fs::remove_file(&fifo).unwrap();
        let t0 = std::time::Instant::now();
        hand_over(rw, &fifo, Duration::from_secs(10)).await;
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn stdin_ends_on_close_io() {
        use std::io::{Read, Write};
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let io = IoPaths {
            stdin: fifo.display().to_string(),
            ..Default::default()
        };
        let (stdio, mut pio) = open(&io, "ns", "c1").await.unwrap();
        let mut w = OpenOptions::new().write(true).open(&fifo).unwrap();
        w.write_all(b"abc").unwrap();
        let mut r = std::fs::File::from(stdio.stdin.unwrap());
        let mut buf = [0u8; 3];
        let reader = tokio::task::spawn_blocking(move || {
            r.read_exact(&mut buf).unwrap();
            let mut rest = Vec::new();
            r.read_to_end(&mut rest).unwrap();
            (buf, rest)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        pio.close_stdin();
        let (buf, rest) = reader.await.unwrap();
        assert_eq!(&buf, b"abc");
        assert!(rest.is_empty(), "EOF after CloseIO");
    }

    #[tokio::test]
    async fn binary_logger_gets_both_streams_and_is_waited_for() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let logger = d.path().join("logger.sh");
        let out = d.path().join("out");
        // containerd's protocol: stdout on fd 3, stderr on fd 4, close fd 5
        // once ready; the container id arrives in the environment.
        std::fs::write(
            &logger,
            "#!/bin/sh\nexec 5>&-\n{ echo \"id=$CONTAINER_ID ns=$CONTAINER_NAMESPACE\"; cat <&3; cat <&4; } > \"$1\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755)).unwrap();
        let uri = format!("binary://{}?{}", logger.display(), out.display());
        let io = IoPaths {
            stdout: uri.clone(),
            stderr: uri,
            ..Default::default()
        };
        let (stdio, mut pio) = open(&io, "ns1", "c1").await.unwrap();
        std::fs::File::from(stdio.stdout.unwrap())
            .write_all(b"to-out\n")
            .unwrap();
        std::fs::File::from(stdio.stderr.unwrap())
            .write_all(b"to-err\n")
            .unwrap();
        pio.drain().await;
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "id=c1 ns=ns1\nto-out\nto-err\n",
            "the logger ran to the end before drain returned"
        );
    }

    #[tokio::test]
    async fn missing_or_wrong_stdio_is_invalid() {
        let io = IoPaths {
            stdout: "/nonexistent/fifo".into(),
            ..Default::default()
        };
        assert!(matches!(
            open(&io, "ns", "c").await,
            Err(Error::InvalidArgument(_))
        ));
    }
}
