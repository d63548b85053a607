//! The real `Mounts`: containerd mounts, the pod's shm tmpfs, netns checks.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::Mounts;
use crate::config::Mount;
use crate::error::OsError;

/// NS_GET_NSTYPE from linux/nsfs.h.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

pub struct LinuxMounts;

/// The mount(2) flags an option sets and clears, for the options that are
/// plain flags (`ro`, `nosuid`, `noatime`, ...); `None` for any other.
pub fn flag_option(o: &str) -> Option<(MsFlags, MsFlags)> {
    let none = MsFlags::empty();
    Some(match o {
        "ro" | "rdonly" => (MsFlags::MS_RDONLY, none),
        "rw" => (none, MsFlags::MS_RDONLY),
        "nosuid" => (MsFlags::MS_NOSUID, none),
        "suid" => (none, MsFlags::MS_NOSUID),
        "nodev" => (MsFlags::MS_NODEV, none),
        "dev" => (none, MsFlags::MS_NODEV),
        "noexec" => (MsFlags::MS_NOEXEC, none),
        "exec" => (none, MsFlags::MS_NOEXEC),
        "sync" => (MsFlags::MS_SYNCHRONOUS, none),
        "async" => (none, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => (MsFlags::MS_DIRSYNC, none),
        "remount" => (MsFlags::MS_REMOUNT, none),
        "mand" => (MsFlags::MS_MANDLOCK, none),
        "nomand" => (none, MsFlags::MS_MANDLOCK),
        "atime" => (none, MsFlags::MS_NOATIME),
        "noatime" => (MsFlags::MS_NOATIME, none),
        "diratime" => (none, MsFlags::MS_NODIRATIME),
        "nodiratime" => (MsFlags::MS_NODIRATIME, none),
        "relatime" => (MsFlags::MS_RELATIME, none),
        "norelatime" => (none, MsFlags::MS_RELATIME),
        "strictatime" => (MsFlags::MS_STRICTATIME, none),
        "nostrictatime" => (none, MsFlags::MS_STRICTATIME),
        _ => return None,
    })
}

/// A propagation option (`private`, `rshared`, ...) as its mount(2) flags.
pub fn propagation_option(o: &str) -> Option<MsFlags> {
    let base = match o.strip_prefix('r').unwrap_or(o) {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(if o.starts_with('r') {
        base | MsFlags::MS_REC
    } else {
        base
    })
}

/// Splits containerd mount options into mount(2) flags and the data string.
/// Propagation flags are returned apart: they need a second mount call.
pub fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        if let Some((set, clear)) = flag_option(o) {
            flags |= set;
            flags &= !clear;
        } else if let Some(p) = propagation_option(o) {
            propagation |= p;
        } else {
            match o.as_str() {
                "bind" => flags |= MsFlags::MS_BIND,
                "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
                "defaults" => {}
                _ => data.push(o.as_str()),
            }
        }
    }
    (flags, propagation, data.join(","))
}

fn errno_to_io(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Mounts for LinuxMounts {
    fn mount(&self, m: &Mount, target: &Path) -> Result<(), OsError> {
        let (mut flags, propagation, data) = parse_options(&m.options);
        if m.kind == "bind" || m.kind == "rbind" {
            flags |= MsFlags::MS_BIND;
            if m.kind == "rbind" {
                flags |= MsFlags::MS_REC;
            }
        }
        let data = (!data.is_empty()).then_some(data.as_str());
        let fstype = (!flags.contains(MsFlags::MS_BIND)).then_some(m.kind.as_str());
        mount(Some(m.source.as_str()), target, fstype, flags, data)
            .map_err(|e| OsError::path("mount", target, errno_to_io(e)))?;
        // A bind mount ignores MS_RDONLY until remounted.
        if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
            let re = flags | MsFlags::MS_REMOUNT;
            if let Err(e) = mount(None::<&str>, target, None::<&str>, re, None::<&str>) {
                let _ = umount2(target, MntFlags::MNT_DETACH);
                return Err(OsError::path("remount ro", target, errno_to_io(e)));
            }
        }
        if !propagation.is_empty() {
            if let Err(e) = mount(
                None::<&str>,
                target,
                None::<&str>,
                propagation,
                None::<&str>,
            ) {
                let _ = umount2(target, MntFlags::MNT_DETACH);
                return Err(OsError::path("set propagation", target, errno_to_io(e)));
            }
        }
        Ok(())
    }

    fn mount_shm(&self, target: &Path) -> Result<(), OsError> {
        mount(
            Some("shm"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        )
        .map_err(|e| OsError::path("mount shm", target, errno_to_io(e)))
    }

    fn unmount(&self, target: &Path) -> Result<(), OsError> {
        loop {
            match umount2(target, MntFlags::MNT_DETACH) {
                Ok(()) => continue, // stacked mounts: peel them all
                Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(OsError::path("umount", target, errno_to_io(e))),
            }
        }
    }

    fn check_netns(&self, path: &Path) -> Result<(), OsError> {
        let f = File::open(path).map_err(|e| OsError::path("open netns", path, e))?;
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
        let t = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) };
        if t < 0 {
            return Err(OsError::path(
                "not a namespace file",
                path,
                io::Error::last_os_error(),
            ));
        }
        if t != libc::CLONE_NEWNET {
            return Err(OsError::path(
                "not a network namespace",
                path,
                io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options() {
        let (f, p, d) = parse_options(&s(&[
            "rbind",
            "ro",
            "nosuid",
            "rprivate",
            "lowerdir=/a",
            "upperdir=/b",
        ]));
        assert!(f.contains(
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        ));
        assert_eq!(p, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(d, "lowerdir=/a,upperdir=/b");
        let (f, _, _) = parse_options(&s(&["ro", "rw"]));
        assert!(!f.contains(MsFlags::MS_RDONLY));
    }
}
