//! The last steps before a container process runs its program, in the
//! order runc takes them: rlimits, the bounding set, the user and groups,
//! the capability sets, no_new_privs, seccomp, then execve.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCapabilities, Process};

use super::seccomp;

pub const CAPS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A capability's number from its name (`CAP_` prefix optional).
pub fn cap_number(name: &str) -> Option<u32> {
    let n = name.strip_prefix("CAP_").unwrap_or(name);
    CAPS.iter().position(|c| *c == n).map(|i| i as u32)
}

/// The highest capability this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// A 64-bit mask of the capabilities named in a set (unknown ones are
/// skipped, as runc does with a warning).
fn mask<'a, I: IntoIterator<Item = &'a oci_spec::runtime::Capability>>(set: Option<I>) -> u64 {
    let mut m = 0u64;
    for c in set.into_iter().flatten() {
        if let Some(n) = cap_number(&c.to_string()) {
            m |= 1 << n;
        }
    }
    m
}

/// The five sets as masks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapSets {
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> CapSets {
        let Some(c) = c else {
            return CapSets::default();
        };
        CapSets {
            bounding: mask(c.bounding().as_ref()),
            effective: mask(c.effective().as_ref()),
            permitted: mask(c.permitted().as_ref()),
            inheritable: mask(c.inheritable().as_ref()),
            ambient: mask(c.ambient().as_ref()),
        }
    }
}

fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn capset(c: &CapSets) -> Result<(), String> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        Data {
            effective: c.effective as u32,
            permitted: c.permitted as u32,
            inheritable: c.inheritable as u32,
        },
        Data {
            effective: (c.effective >> 32) as u32,
            permitted: (c.permitted >> 32) as u32,
            inheritable: (c.inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and data are valid for the call, laid out as the
    // kernel's version-3 capability structures (two data words).
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(errno("capset"))
    }
}

fn prctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> libc::c_int {
    // SAFETY: every prctl used here takes integer arguments only.
    unsafe { libc::prctl(op, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) }
}

/// Drops from the bounding set every capability not in `keep`.
pub fn drop_bounding(keep: u64) -> Result<(), String> {
    for cap in 0..=last_cap().min(63) {
        if keep & (1 << cap) == 0 && prctl(libc::PR_CAPBSET_DROP, cap.into(), 0) != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(format!("drop capability {cap} from the bounding set: {e}"));
            }
        }
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<u32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// Checks what can be checked before anything runs.
pub fn validate(p: &Process) -> Result<(), String> {
    for r in p.rlimits().iter().flatten() {
        let name = r.typ().to_string();
        if rlimit_resource(&name).is_none() {
            return Err(format!("unknown rlimit {name}"));
        }
    }
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err("process has no args".into());
    }
    Ok(())
}

pub fn set_rlimits(p: &Process) -> Result<(), String> {
    for r in p.rlimits().iter().flatten() {
        let name = r.typ().to_string();
        let res = rlimit_resource(&name).ok_or_else(|| format!("unknown rlimit {name}"))?;
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: `lim` is a valid rlimit for the call.
        if unsafe { libc::setrlimit(res as _, &lim) } != 0 {
            return Err(errno(&format!("setrlimit {name}")));
        }
    }
    Ok(())
}

/// Switches to the process's user and groups, keeping the capabilities the
/// spec gives it, then sets the capability sets, no_new_privs and seccomp.
pub fn become_user(
    p: &Process,
    caps: &CapSets,
    no_new_privs: bool,
    filter: Option<&[seccomp::Insn]>,
) -> Result<(), String> {
    let user = p.user();
    drop_bounding(caps.bounding)?;
    // Without no_new_privs, the filter goes on while we still have
    // CAP_SYS_ADMIN; the calls that follow must be allowed by it, as they
    // are by every profile that lets a container run at all.
    if !no_new_privs {
        if let Some(f) = filter {
            seccomp::install(f).map_err(|e| format!("seccomp: {e}"))?;
        }
    }
    if prctl(libc::PR_SET_KEEPCAPS, 1, 0) != 0 {
        return Err(errno("keepcaps"));
    }
    let gids: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    // SAFETY: `gids` is a valid array of its length.
    if unsafe { libc::setgroups(gids.len(), gids.as_ptr()) } != 0 {
        return Err(errno("setgroups"));
    }
    // SAFETY: plain integer syscalls.
    if unsafe { libc::setresgid(user.gid(), user.gid(), user.gid()) } != 0 {
        return Err(errno(&format!("setresgid {}", user.gid())));
    }
    // SAFETY: plain integer syscalls.
    if unsafe { libc::setresuid(user.uid(), user.uid(), user.uid()) } != 0 {
        return Err(errno(&format!("setresuid {}", user.uid())));
    }
    capset(caps)?;
    if prctl(libc::PR_SET_KEEPCAPS, 0, 0) != 0 {
        return Err(errno("keepcaps"));
    }
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as _, 0);
    for cap in 0..64u32 {
        if caps.ambient & (1 << cap) != 0
            && prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as _,
                cap.into(),
            ) != 0
        {
            return Err(errno(&format!("raise ambient capability {cap}")));
        }
    }
    if no_new_privs {
        if prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0) != 0 {
            return Err(errno("no_new_privs"));
        }
        if let Some(f) = filter {
            seccomp::install(f).map_err(|e| format!("seccomp: {e}"))?;
        }
    }
    Ok(())
}

/// The process's environment as `KEY=VALUE` C strings.
pub fn env(p: &Process) -> Result<Vec<CString>, String> {
    p.env()
        .iter()
        .flatten()
        .map(|e| CString::new(e.as_str()).map_err(|_| format!("env {e:?} holds a NUL")))
        .collect()
}

/// Finds the program: a path with a slash as it is, else the first
/// executable match in the process's PATH (or a default PATH).
pub fn lookup(p: &Process) -> Result<PathBuf, String> {
    let arg0 = p
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .ok_or("process has no args")?;
    if arg0.contains('/') {
        let path = PathBuf::from(arg0);
        return if executable(&path) {
            Ok(path)
        } else {
            Err(format!(
                "exec: {arg0:?}: {}",
                std::io::Error::last_os_error()
            ))
        };
    }
    let path = p
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .to_string();
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(arg0);
        if executable(&cand) {
            return Ok(cand);
        }
    }
    Err(format!(
        "exec: {arg0:?}: executable file not found in $PATH"
    ))
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// execve; returns only on failure.
pub fn exec(program: &Path, p: &Process, env: &[CString]) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(prog) = CString::new(program.as_os_str().as_bytes()) else {
        return "program path holds a NUL".into();
    };
    let args: Result<Vec<CString>, _> = p
        .args()
        .iter()
        .flatten()
        .map(|a| CString::new(a.as_str()))
        .collect();
    let Ok(args) = args else {
        return "an argument holds a NUL".into();
    };
    match nix::unistd::execve(&prog, &args, env) {
        Err(e) => format!("exec {}: {e}", program.display()),
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names() {
        assert_eq!(cap_number("CAP_CHOWN"), Some(0));
        assert_eq!(cap_number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(cap_number("NET_RAW"), Some(13));
        assert_eq!(cap_number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(cap_number("CAP_NOPE"), None);
        let c: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_CHOWN","CAP_KILL"],"effective":["CAP_KILL"]}"#,
        )
        .unwrap();
        let s = CapSets::from_spec(Some(&c));
        assert_eq!(s.bounding, 1 | (1 << 5));
        assert_eq!(s.effective, 1 << 5);
        assert_eq!(s.ambient, 0);
    }

    #[test]
    fn lookup_follows_path() {
        let p: Process = serde_json::from_str(
            r#"{"cwd":"/","args":["sh"],"env":["PATH=/nonexistent:/bin"],"user":{"uid":0,"gid":0}}"#,
        )
        .unwrap();
        assert_eq!(lookup(&p).unwrap(), PathBuf::from("/bin/sh"));
        let p: Process = serde_json::from_str(
            r#"{"cwd":"/","args":["no-such-program-here"],"user":{"uid":0,"gid":0}}"#,
        )
        .unwrap();
        assert!(lookup(&p).unwrap_err().contains("not found"));
    }

    #[test]
    fn unknown_rlimits_are_refused() {
        let p: Process = serde_json::from_str(
            r#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},
                "rlimits":[{"type":"RLIMIT_NOFILE","soft":10,"hard":20}]}"#,
        )
        .unwrap();
        assert!(validate(&p).is_ok());
    }
}
