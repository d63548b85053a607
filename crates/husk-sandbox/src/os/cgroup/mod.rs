//! Pod cgroups: path rules, the v1 and v2 drivers, and the stat parsers.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, OsError};
use crate::os::{CgroupVersion, Cgroups};

mod parse;
mod v1;
mod v2;

pub use parse::*;
pub use v1::CgroupV1;
pub use v2::CgroupV2;

/// The parent used when the pod config names none.
pub const DEFAULT_PARENT: &str = "/husk";

/// The pod cgroup's path for `parent` and sandbox `id`. `parent` is either a
/// cgroupfs path (`/kubepods/burstable/pod…`) or a systemd slice name
/// (`kubepods-burstable-pod….slice`), which is expanded the way systemd
/// nests slices.
pub fn pod_path(parent: &str, id: &str) -> Result<PathBuf, Error> {
    // The id becomes a path component: checked here too, not only by the
    // callers (fuzzing found `..` accepted when a caller had not).
    crate::id::validate(id)?;
    let parent = if parent.is_empty() {
        DEFAULT_PARENT
    } else {
        parent
    };
    let base = if parent.ends_with(".slice") && !parent.contains('/') {
        expand_slice(parent)?
    } else {
        PathBuf::from("/").join(parent)
    };
    for c in base.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(s) if !s.is_empty() => {}
            _ => {
                return Err(Error::invalid(format!(
                    "cgroup_parent {parent:?} must not contain '.' or '..'"
                )))
            }
        }
    }
    if base.as_os_str().len() > 1024 {
        return Err(Error::invalid("cgroup_parent is too long"));
    }
    Ok(base.join(id))
}

fn expand_slice(slice: &str) -> Result<PathBuf, Error> {
    let stem = &slice[..slice.len() - ".slice".len()];
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(Error::invalid(format!(
            "cgroup_parent {slice:?} is not a valid systemd slice"
        )));
    }
    if stem == "-" {
        return Ok(PathBuf::from("/"));
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// Picks the driver for this host. `HUSK_CGROUP=v1|v2` forces one; by
/// default a unified mount at /sys/fs/cgroup means v2, anything else v1.
pub fn detect() -> Result<Arc<dyn Cgroups>, OsError> {
    let forced = std::env::var("HUSK_CGROUP").unwrap_or_default();
    let unified_root = Path::new("/sys/fs/cgroup");
    let pure_v2 = unified_root.join("cgroup.controllers").exists();
    match (forced.as_str(), pure_v2) {
        ("v2", _) | ("", true) => {
            let root = if pure_v2 {
                unified_root.to_path_buf()
            } else {
                unified_root.join("unified")
            };
            Ok(Arc::new(CgroupV2::new(root)))
        }
        _ => Ok(Arc::new(CgroupV1::from_mountinfo()?)),
    }
}

/// On a hybrid host (v1 hierarchies with a unified one beside them at
/// /sys/fs/cgroup/unified), runc also makes a container's cgroup in the
/// unified hierarchy, for process tracking. Its directory for `rel`, if
/// there is one: removing a container without runc must remove it too.
pub fn hybrid_unified_dir(rel: &Path) -> Option<PathBuf> {
    let root = Path::new("/sys/fs/cgroup/unified");
    if !root.join("cgroup.controllers").exists() {
        return None;
    }
    let dir = root.join(rel.strip_prefix("/").unwrap_or(rel));
    dir.is_dir().then_some(dir)
}

/// Makes every missing directory of `path`, returning those it made,
/// outermost first. Tries the leaf first: in the common case (the parent
/// exists) that is one mkdir and no stat.
fn mkdir_all(path: &Path) -> Result<Vec<PathBuf>, OsError> {
    let mut made = Vec::new();
    if let Err(e) = mkdir_into(path, &mut made) {
        let _ = remove_dirs(&made);
        return Err(e);
    }
    Ok(made)
}

fn mkdir_into(dir: &Path, made: &mut Vec<PathBuf>) -> Result<(), OsError> {
    match fs::create_dir(dir) {
        Ok(()) => {
            made.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = dir.parent().ok_or_else(|| {
                OsError::path(
                    "mkdir cgroup",
                    dir,
                    io::Error::from_raw_os_error(libc::ENOENT),
                )
            })?;
            mkdir_into(parent, made)?;
            match fs::create_dir(dir) {
                Ok(()) => {
                    made.push(dir.to_path_buf());
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(OsError::path("mkdir cgroup", dir, e)),
            }
        }
        Err(e) => Err(OsError::path("mkdir cgroup", dir, e)),
    }
}

/// Removes cgroup directories innermost first. A directory that is gone is
/// fine; one that still has child cgroups is shared and left alone; one that
/// is busy with exiting tasks is retried for a short while.
fn remove_dirs(dirs: &[PathBuf]) -> Result<(), OsError> {
    for dir in dirs.iter().rev() {
        let mut tries = 0;
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        || e.raw_os_error() == Some(libc::ENOTEMPTY) =>
                {
                    if has_subdirs(dir) {
                        break;
                    }
                    tries += 1;
                    if tries > 200 {
                        return Err(OsError::path("rmdir cgroup", dir, e));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => return Err(OsError::path("rmdir cgroup", dir, e)),
            }
        }
    }
    Ok(())
}

fn has_subdirs(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        })
        .unwrap_or(false)
}

/// Reads a cgroup file; a missing file (controller absent) reads as `None`.
fn read_opt(path: &Path) -> Result<Option<String>, OsError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OsError::path("read", path, e)),
    }
}

fn read_pids(file: &Path, out: &mut Vec<u32>) -> Result<(), OsError> {
    if let Some(s) = read_opt(file)? {
        for line in s.lines() {
            if let Ok(pid) = line.trim().parse::<u32>() {
                if !out.contains(&pid) {
                    out.push(pid);
                }
            }
        }
    }
    Ok(())
}

fn kill_pids(pids: &[u32], signal: i32) -> Result<(), OsError> {
    for &pid in pids {
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|e| OsError::sys("signal number", e))?;
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(OsError::sys("kill", e)),
        }
    }
    Ok(())
}

/// Names the version for diagnostics.
pub fn version_name(v: CgroupVersion) -> &'static str {
    match v {
        CgroupVersion::V1 => "v1",
        CgroupVersion::V2 => "v2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_paths() {
        assert_eq!(pod_path("", "p").unwrap(), PathBuf::from("/husk/p"));
        assert_eq!(
            pod_path("/kubepods/besteffort/pod1", "p").unwrap(),
            PathBuf::from("/kubepods/besteffort/pod1/p")
        );
        assert_eq!(
            pod_path("kubepods-besteffort-pod1.slice", "p").unwrap(),
            PathBuf::from(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/p"
            )
        );
        assert!(pod_path("/a/../b", "p").is_err());
        // Fuzz regression (ids_and_paths): an id of `..` climbed out.
        assert!(pod_path("./et../c.", "..").is_err());
        assert!(pod_path("/kubepods", "a/b").is_err());
        assert!(pod_path("-a.slice", "p").is_err());
        assert!(pod_path("a--b.slice", "p").is_err());
    }

    #[test]
    fn mkdir_and_remove_only_what_was_made() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("a")).unwrap();
        let made = mkdir_all(&t.path().join("a/b/c")).unwrap();
        assert_eq!(made, vec![t.path().join("a/b"), t.path().join("a/b/c")]);
        remove_dirs(&made).unwrap();
        assert!(t.path().join("a").exists());
        assert!(!t.path().join("a/b").exists());
        remove_dirs(&made).unwrap();
    }
}
