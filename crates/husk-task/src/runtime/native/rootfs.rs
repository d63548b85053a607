//! A container's filesystem, built inside its new mount namespace: the
//! spec's mounts, device nodes, /dev links, pivot_root, then masked and
//! read-only paths, and a read-only root.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use husk_sandbox::os::mount::{flag_option, propagation_option};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

/// What a mount's options mean: flags for mount(2), propagation changes
/// applied after it, and the rest as the filesystem's data.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOpts {
    pub flags: MsFlags,
    /// Flags that only a remount of a bind mount applies.
    pub clear: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: String,
    pub bind: bool,
    pub recursive: bool,
    /// Read-only through every submount (mount_setattr, AT_RECURSIVE).
    pub rro: bool,
    /// Options husk's runtime does not implement: the mount fails.
    pub unsupported: Vec<String>,
}

/// Every mount option [`parse_options`] acts on, for `features`.
pub const OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "rdonly",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rro",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

impl Default for MountOpts {
    fn default() -> Self {
        MountOpts {
            flags: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            bind: false,
            recursive: false,
            rro: false,
            unsupported: Vec::new(),
        }
    }
}

pub fn parse_options(options: &[String]) -> MountOpts {
    let mut o = MountOpts::default();
    let mut data = Vec::new();
    for opt in options {
        if let Some((set, clear)) = flag_option(opt) {
            o.flags |= set;
            o.flags &= !clear;
            o.clear |= clear;
            continue;
        }
        if let Some(p) = propagation_option(opt) {
            o.propagation.push(p);
            continue;
        }
        match opt.as_str() {
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            "rro" => o.rro = true,
            "rrw" | "defaults" => {}
            "tmpcopyup" | "idmap" | "ridmap" => o.unsupported.push(opt.clone()),
            other => data.push(other.to_string()),
        }
    }
    o.data = data.join(",");
    o
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("{} holds a NUL", p.display()))
}

fn err(what: String, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// `path` inside `root`, with every symlink on the way resolved as if
/// `root` were `/`: nothing a container image holds can point a mount
/// outside its root.
pub fn resolve_in(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let mut out = root.to_path_buf();
    let mut pending: Vec<PathBuf> = path
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.components().next() {
            Some(Component::RootDir) | Some(Component::CurDir) | None => continue,
            Some(Component::ParentDir) => {
                if out != root {
                    out.pop();
                }
                continue;
            }
            _ => {}
        }
        let next = out.join(&part);
        match std::fs::read_link(&next) {
            Ok(target) => {
                links += 1;
                if links > 255 {
                    return Err(format!("{}: too many symlinks", path.display()));
                }
                if target.is_absolute() {
                    out = root.to_path_buf();
                }
                for c in target.components().rev() {
                    pending.push(PathBuf::from(c.as_os_str()));
                }
            }
            Err(_) => out = next,
        }
    }
    Ok(out)
}

/// Makes the mount point: a directory, or an empty file when a file is
/// bound onto it.
fn make_target(target: &Path, file: bool) -> Result<(), String> {
    if target.exists() {
        return Ok(());
    }
    if file {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| err(format!("mkdir {}", parent.display()), e))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(target)
            .map(drop)
            .map_err(|e| err(format!("create {}", target.display()), e))
    } else {
        std::fs::create_dir_all(target).map_err(|e| err(format!("mkdir {}", target.display()), e))
    }
}

/// `linux.rootfsPropagation` as mount flags (None when unset).
fn root_propagation(spec: &Spec) -> Result<Option<MsFlags>, String> {
    match spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        None | Some("") => Ok(None),
        Some(p) => propagation_option(p)
            .map(Some)
            .ok_or_else(|| format!("unknown rootfsPropagation {p:?}")),
    }
}

/// The mount `path` lives on (the longest mount point above it), and
/// whether it is shared.
fn parent_mount(path: &Path) -> Option<(PathBuf, bool)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(PathBuf, bool)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(mp) = f.get(4) else { continue };
        let mp = PathBuf::from(mp.replace("\\040", " "));
        if !path.starts_with(&mp) {
            continue;
        }
        let shared = f
            .iter()
            .skip(6)
            .take_while(|x| **x != "-")
            .any(|x| x.starts_with("shared:"));
        if best
            .as_ref()
            .is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len())
        {
            best = Some((mp, shared));
        }
    }
    best
}

/// Everything up to pivot_root: `rootfs` becomes a mount point and gets
/// the spec's mounts and devices.
pub fn prepare(spec: &Spec, rootfs: &Path, cgroup_dirs: &[PathBuf]) -> Result<(), String> {
    let linux = spec.linux().as_ref();
    // The whole tree slave (or as the spec says), so nothing the container
    // mounts reaches the host unless it asks for shared propagation.
    let propagation = root_propagation(spec)?.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .map_err(|e| err("propagation of /".into(), e))?;
    // pivot_root refuses a new root whose parent mount is shared.
    if let Some(parent) = parent_mount(rootfs) {
        if parent.1 {
            mount(
                None::<&str>,
                &parent.0,
                None::<&str>,
                MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| err(format!("make {} private", parent.0.display()), e))?;
        }
    }
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err(format!("bind {}", rootfs.display()), e))?;
    let mut dev_is_tmpfs = false;
    for m in spec.mounts().iter().flatten() {
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            dev_is_tmpfs = true;
        }
        mount_one(m, rootfs, cgroup_dirs)?;
    }
    let devices = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
    make_devices(rootfs, &devices, dev_is_tmpfs)?;
    Ok(())
}

fn mount_one(m: &Mount, rootfs: &Path, cgroup_dirs: &[PathBuf]) -> Result<(), String> {
    let o = parse_options(m.options().as_deref().unwrap_or(&[]));
    if !o.unsupported.is_empty() {
        return Err(format!(
            "mount on {}: options {} are not supported by husk's runtime",
            m.destination().display(),
            o.unsupported.join(",")
        ));
    }
    let kind = m.typ().as_deref().unwrap_or("");
    let target = resolve_in(rootfs, m.destination())?;
    if kind == "cgroup" || kind == "cgroup2" {
        return mount_cgroup(&target, &o, cgroup_dirs);
    }
    let bind = o.bind || kind == "bind";
    if bind {
        let source = m
            .source()
            .as_ref()
            .ok_or_else(|| format!("bind mount on {} has no source", m.destination().display()))?;
        let file = std::fs::metadata(source)
            .map(|md| !md.is_dir())
            .map_err(|e| err(format!("bind source {}", source.display()), e))?;
        make_target(&target, file)?;
        let mut flags = MsFlags::MS_BIND;
        if o.recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(
            Some(source.as_path()),
            &target,
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| {
            err(
                format!("bind {} on {}", source.display(), target.display()),
                e,
            )
        })?;
        let extra = o.flags & !MsFlags::MS_REMOUNT;
        if !extra.is_empty() {
            remount_bind(&target, extra)?;
        }
    } else {
        make_target(&target, false)?;
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(kind));
        let data = (!o.data.is_empty()).then_some(o.data.as_str());
        let r = mount(Some(source.as_path()), &target, Some(kind), o.flags, data);
        match r {
            Ok(()) => {}
            // sysfs cannot be mounted in a network namespace the container
            // does not own (host network): bind the host's, as runc does.
            Err(nix::Error::EPERM) | Err(nix::Error::EBUSY) if kind == "sysfs" => {
                mount(
                    Some("/sys"),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| err(format!("bind /sys on {}", target.display()), e))?;
                remount_bind(&target, o.flags)?;
            }
            Err(e) => return Err(err(format!("mount {kind} on {}", target.display()), e)),
        }
    }
    for p in &o.propagation {
        mount(None::<&str>, &target, None::<&str>, *p, None::<&str>)
            .map_err(|e| err(format!("propagation of {}", target.display()), e))?;
    }
    if o.rro {
        read_only_recursive(&target)?;
    }
    Ok(())
}

/// `rro`: mount_setattr(2) with MOUNT_ATTR_RDONLY over the whole tree.
fn read_only_recursive(target: &Path) -> Result<(), String> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let path = cstr(target)?;
    // SAFETY: mount_setattr with a NUL-terminated path and a mount_attr
    // we own whose size is passed alongside.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(err(
            format!("rro on {}", target.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Applies flags to a bind mount, keeping the flags it already has that
/// the kernel would refuse to clear.
fn remount_bind(target: &Path, flags: MsFlags) -> Result<(), String> {
    let current = nix::sys::statvfs::statvfs(target)
        .map(|s| {
            use nix::sys::statvfs::FsFlags;
            let f = s.flags();
            let mut m = MsFlags::empty();
            for (a, b) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            ] {
                if f.contains(a) {
                    m |= b;
                }
            }
            m
        })
        .unwrap_or(MsFlags::empty());
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | current,
        None::<&str>,
    )
    .map_err(|e| err(format!("remount {}", target.display()), e))
}

/// The container's cgroups, visible at the target: on v1 a tmpfs with each
/// hierarchy's directory of the container bound in; on v2 the unified
/// directory bound.
fn mount_cgroup(target: &Path, o: &MountOpts, cgroup_dirs: &[PathBuf]) -> Result<(), String> {
    make_target(target, false)?;
    let ro = o.flags.contains(MsFlags::MS_RDONLY);
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let v2 = cgroup_dirs.len() == 1
        && cgroup_dirs[0].starts_with("/sys/fs/cgroup")
        && cgroup_dirs[0].join("cgroup.controllers").exists();
    if v2 {
        mount(
            Some(&cgroup_dirs[0]),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| err(format!("bind cgroup on {}", target.display()), e))?;
        return if ro {
            remount_bind(target, flags | MsFlags::MS_RDONLY)
        } else {
            Ok(())
        };
    }
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )
    .map_err(|e| err(format!("tmpfs on {}", target.display()), e))?;
    for dir in cgroup_dirs {
        // /sys/fs/cgroup/<hierarchy>/<rel…>: the hierarchy's mount name.
        let Some(name) = dir
            .strip_prefix("/sys/fs/cgroup")
            .ok()
            .and_then(|r| r.components().next())
            .map(|c| c.as_os_str().to_owned())
        else {
            continue;
        };
        let at = target.join(&name);
        make_target(&at, false)?;
        mount(
            Some(dir.as_path()),
            &at,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| err(format!("bind {} on {}", dir.display(), at.display()), e))?;
        if ro {
            remount_bind(&at, flags | MsFlags::MS_RDONLY)?;
        }
    }
    if ro {
        remount_bind(target, flags | MsFlags::MS_RDONLY)?;
    }
    Ok(())
}

/// The devices every container gets (OCI runtime spec, "Default Devices").
fn default_devices() -> Vec<(&'static str, u64, u64)> {
    vec![
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
}

fn make_devices(rootfs: &Path, devices: &[LinuxDevice], dev_is_tmpfs: bool) -> Result<(), String> {
    let mut all: Vec<(PathBuf, libc::mode_t, u64, u64, u32, u32, u32)> = Vec::new();
    for d in devices {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            _ => continue,
        };
        all.push((
            d.path().clone(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        ));
    }
    if dev_is_tmpfs {
        for (p, major, minor) in default_devices() {
            if !all.iter().any(|d| d.0 == Path::new(p)) {
                all.push((PathBuf::from(p), libc::S_IFCHR, major, minor, 0o666, 0, 0));
            }
        }
    }
    for (path, kind, major, minor, mode, uid, gid) in all {
        let target = resolve_in(rootfs, &path)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| err(format!("mkdir {}", parent.display()), e))?;
        }
        let _ = std::fs::remove_file(&target);
        let c = cstr(&target)?;
        let dev = libc::makedev(major as u32, minor as u32);
        // SAFETY: `c` is a valid C string; mknod takes integers otherwise.
        if unsafe { libc::mknod(c.as_ptr(), kind | (mode & 0o7777), dev) } != 0 {
            return Err(err(
                format!("mknod {}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: as above; chown/chmod on a path we just made.
        unsafe {
            libc::chown(c.as_ptr(), uid, gid);
            libc::chmod(c.as_ptr(), mode & 0o7777);
        }
    }
    if dev_is_tmpfs {
        for (link, to) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
        ] {
            let at = rootfs.join(link.trim_start_matches('/'));
            if std::fs::symlink_metadata(&at).is_err() {
                std::os::unix::fs::symlink(to, &at)
                    .map_err(|e| err(format!("symlink {link}"), e))?;
            }
        }
        if Path::new("/proc/kcore").exists() {
            let _ = std::os::unix::fs::symlink("/proc/kcore", rootfs.join("dev/core"));
        }
        // /dev/ptmx points into the container's own devpts.
        let ptmx = rootfs.join("dev/ptmx");
        if rootfs.join("dev/pts/ptmx").exists() {
            let _ = std::fs::remove_file(&ptmx);
            std::os::unix::fs::symlink("pts/ptmx", &ptmx)
                .map_err(|e| err("symlink /dev/ptmx".into(), e))?;
        }
    }
    Ok(())
}

/// pivot_root into `rootfs`, dropping the old root.
pub fn pivot(rootfs: &Path) -> Result<(), String> {
    use nix::fcntl::OFlag;
    let old = nix::fcntl::open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| err("open /".into(), e))?;
    nix::unistd::chdir(rootfs).map_err(|e| err(format!("chdir {}", rootfs.display()), e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root".into(), e))?;
    // The old root sits on top of the new one. "." must name the old
    // root, not the new one under it (whose mounts keep the propagation
    // the spec asked for): go there by fd. Keep its unmount to ourselves,
    // then drop it.
    nix::unistd::fchdir(&old).map_err(|e| err("fchdir old root".into(), e))?;
    drop(old);
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| err("make old root slave".into(), e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("unmount old root".into(), e))?;
    nix::unistd::chdir("/").map_err(|e| err("chdir /".into(), e))
}

/// After pivot_root: sysctls, masked and read-only paths, read-only root.
pub fn finish(spec: &Spec) -> Result<(), String> {
    let linux = spec.linux().as_ref();
    // Propagation of the new root as the spec asks (after pivot_root,
    // which needs it not shared).
    if let Some(p) = root_propagation(spec)? {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .map_err(|e| err("rootfsPropagation of /".into(), e))?;
    }
    for (k, v) in linux.and_then(|l| l.sysctl().clone()).unwrap_or_default() {
        let path = Path::new("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&path, v.as_bytes()).map_err(|e| err(format!("sysctl {k}"), e))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default()
    {
        let path = Path::new(&p);
        match mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => remount_bind(path, MsFlags::MS_RDONLY)?,
            Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(err(format!("read-only {p}"), e)),
        }
    }
    for p in linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
    {
        let path = Path::new(&p);
        let r = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            ),
            Ok(_) => mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ),
            Err(_) => continue,
        };
        r.map_err(|e| err(format!("mask {p}"), e))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> MountOpts {
        parse_options(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_become_flags_propagation_and_data() {
        let o = opts(&["nosuid", "noexec", "nodev", "mode=755", "size=65536k"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV
        );
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.bind);
        let o = opts(&["rbind", "rprivate", "ro"]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, MsFlags::MS_RDONLY);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        let o = opts(&["bind", "rslave", "shared"]);
        assert_eq!(
            o.propagation,
            vec![MsFlags::MS_SLAVE | MsFlags::MS_REC, MsFlags::MS_SHARED]
        );
        assert_eq!(opts(&["ro", "rw"]).flags, MsFlags::empty());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("real/up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("escape")).unwrap();
        assert_eq!(
            resolve_in(root, Path::new("/abs/dir")).unwrap(),
            root.join("real/dir")
        );
        assert_eq!(
            resolve_in(root, Path::new("/real/up/x")).unwrap(),
            root.join("x")
        );
        assert_eq!(
            resolve_in(root, Path::new("/escape")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in(root, Path::new("/../../new")).unwrap(),
            root.join("new")
        );
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in(root, Path::new("/loop")).is_err());
    }
}
