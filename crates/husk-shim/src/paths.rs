//! Where a shim keeps its socket and state. Both are derived from the
//! containerd namespace and sandbox id alone, so `start`, the server,
//! `delete` and huskctl agree without talking to each other.

use std::path::PathBuf;

/// Root of husk's runtime files; `HUSK_RUN_ROOT` overrides it (tests).
pub fn run_root() -> PathBuf {
    std::env::var_os("HUSK_RUN_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/husk"))
}

/// FNV-1a, 64 bits: a stable short name for a (namespace, id) pair.
fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub fn socket_dir() -> PathBuf {
    run_root().join("s")
}

/// The shim's socket for `ns`/`id`: short enough for sun_path.
pub fn socket_path(ns: &str, id: &str) -> PathBuf {
    let key = format!("{ns}/{id}");
    socket_dir().join(format!("{:016x}.sock", fnv64(key.as_bytes())))
}

pub fn address(ns: &str, id: &str) -> String {
    format!("unix://{}", socket_path(ns, id).display())
}

/// Per-namespace state root: `<run root>/state/<ns>`.
pub fn state_root(ns: &str) -> PathBuf {
    run_root().join("state").join(ns)
}

/// The registry of a pod's live containers (their bundles), inside the
/// pod's state directory.
pub fn task_registry(ns: &str, id: &str) -> PathBuf {
    state_root(ns).join(id).join("tasks")
}

/// The OCI runtime's state root for containers of `ns` (runc `--root`).
pub fn runtime_root(ns: &str) -> PathBuf {
    run_root().join("runc").join(ns)
}

/// Where console sockets for terminals are bound (short, for sun_path).
pub fn console_dir() -> PathBuf {
    run_root().join("c")
}

/// husk's node config (runtime options as TOML: BinaryName, Root,
/// SystemdCgroup): `HUSK_CONFIG`, else /etc/husk/runtime.toml.
pub fn config_file() -> PathBuf {
    std::env::var_os("HUSK_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/husk/runtime.toml"))
}

/// containerd namespaces follow the same identifier rules as ids.
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    husk_sandbox::id::validate(ns).map_err(|e| format!("namespace: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_are_stable_and_short() {
        let a = socket_path("k8s.io", &"x".repeat(76));
        assert_eq!(a, socket_path("k8s.io", &"x".repeat(76)));
        assert_ne!(a, socket_path("default", &"x".repeat(76)));
        assert!(a.as_os_str().len() < 100);
    }
}
