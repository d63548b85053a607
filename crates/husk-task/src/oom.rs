//! OOM kills in a container's cgroup. cgroup v1: an eventfd registered on
//! `memory.oom_control` through `cgroup.event_control`; v2: `memory.events`
//! looked at on a short period (the unified hierarchy here is empty, so v2
//! is tested through the parser on real file contents). Both count the
//! `oom_kill` field, and the exit path asks for kills not yet reported, so
//! a TaskOOM always comes before the TaskExit it explains, and only once.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use husk_sandbox::os::CgroupVersion;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

const V2_PERIOD: Duration = Duration::from_millis(200);

/// The `oom_kill` count in v1's `memory.oom_control` or v2's `memory.events`.
pub fn oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == "oom_kill").then(|| v.trim().parse().ok())?
    })
}

pub struct OomWatch {
    task: Option<JoinHandle<()>>,
    file: PathBuf,
    reported: Arc<AtomicU64>,
}

impl OomWatch {
    /// Kills counted since the last report; records them as reported.
    pub fn take_new(&self) -> bool {
        take_new(&self.file, &self.reported)
    }
}

impl Drop for OomWatch {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn take_new(file: &Path, reported: &AtomicU64) -> bool {
    let Some(n) = std::fs::read_to_string(file)
        .ok()
        .as_deref()
        .and_then(oom_kills)
    else {
        return false;
    };
    reported.fetch_max(n, Ordering::SeqCst) < n
}

/// Watches the memory cgroup `dir` (v1: the memory hierarchy's directory;
/// v2: the unified one). `on_oom` runs once per reported kill batch.
pub fn watch(
    version: CgroupVersion,
    dir: &Path,
    on_oom: impl Fn() + Send + 'static,
) -> std::io::Result<OomWatch> {
    let (file, task) = match version {
        CgroupVersion::V1 => {
            let file = dir.join("memory.oom_control");
            let efd = register_v1(dir, &file)?;
            let (f, reported) = (file.clone(), Arc::new(AtomicU64::new(0)));
            let r2 = reported.clone();
            let dir = dir.to_path_buf();
            let task = tokio::spawn(async move {
                loop {
                    if efd.readable().await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 8];
                    // SAFETY: read into an 8-byte buffer from our eventfd.
                    let n = unsafe { libc::read(efd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
                    if n < 0 {
                        if std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
                        {
                            if let Ok(mut g) = efd.readable().await {
                                g.clear_ready();
                            }
                            continue;
                        }
                        return;
                    }
                    // The eventfd also fires when the cgroup goes away.
                    if !dir.exists() {
                        return;
                    }
                    // It fires as the OOM starts, before the kernel counts
                    // the kill: count it now, so the exit path does not
                    // report it again.
                    let counted = std::fs::read_to_string(&f)
                        .ok()
                        .as_deref()
                        .and_then(oom_kills)
                        .unwrap_or(0);
                    let before = r2.load(Ordering::SeqCst);
                    r2.store(counted.max(before + 1), Ordering::SeqCst);
                    on_oom();
                }
            });
            return Ok(OomWatch {
                task: Some(task),
                file,
                reported,
            });
        }
        CgroupVersion::V2 => {
            let file = dir.join("memory.events");
            std::fs::metadata(&file)?;
            let (f, reported) = (file.clone(), Arc::new(AtomicU64::new(0)));
            let r2 = reported.clone();
            let task = tokio::spawn(async move {
                while f.exists() {
                    if take_new(&f, &r2) {
                        on_oom();
                    }
                    tokio::time::sleep(V2_PERIOD).await;
                }
            });
            (file, (task, reported))
        }
    };
    Ok(OomWatch {
        task: Some(task.0),
        file,
        reported: task.1,
    })
}

fn register_v1(dir: &Path, oom_control: &Path) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: eventfd takes an initial value and flags; returns a new fd or -1.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
    let efd = unsafe { OwnedFd::from_raw_fd(raw) };
    let ctl = std::fs::File::open(oom_control)?;
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), ctl.as_raw_fd()),
    )?;
    // The kernel keeps its own reference to memory.oom_control.
    drop(ctl);
    // SAFETY: `efd` is an owned eventfd that the AsyncFd owns from here on,
    // so it stays open and unchanged for the AsyncFd's whole life.
    unsafe { AsyncFd::register_with_interest(efd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_real_files() {
        // cgroup v1 memory.oom_control (Linux 6.1)
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(oom_kills(v1), Some(2));
        // cgroup v2 memory.events (Linux 6.1)
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills(v2), Some(1));
        assert_eq!(oom_kills("under_oom 0\n"), None);
    }

    #[test]
    fn each_kill_is_reported_once() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("memory.events");
        let r = AtomicU64::new(0);
        std::fs::write(&f, "oom 0\noom_kill 0\n").unwrap();
        assert!(!take_new(&f, &r));
        std::fs::write(&f, "oom 1\noom_kill 1\n").unwrap();
        assert!(take_new(&f, &r));
        assert!(!take_new(&f, &r), "already reported");
        std::fs::write(&f, "oom 3\noom_kill 3\n").unwrap();
        assert!(take_new(&f, &r));
    }

    #[tokio::test]
    async fn v2_watcher_reports_a_kill() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("memory.events");
        std::fs::write(&f, "oom 0\noom_kill 0\n").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let w = watch(CgroupVersion::V2, d.path(), move || {
            let _ = tx.send(());
        })
        .unwrap();
        std::fs::write(&f, "oom 1\noom_kill 1\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert!(!w.take_new());
    }
}
