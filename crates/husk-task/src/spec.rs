//! What the engine reads of a bundle's OCI spec (`config.json`) and of an
//! exec's process, through the `oci-spec` crate.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process, Spec};

use crate::error::{Error, Result};

/// The parts of a container's spec the engine acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The container's cgroup relative to each hierarchy's root.
    pub cgroup: Option<PathBuf>,
    /// Whether the container has a PID namespace of its own; if not, its
    /// processes outlive its init unless the engine kills them.
    pub own_pid_ns: bool,
    pub terminal: bool,
}

/// Reads `<bundle>/config.json`. Missing or invalid is InvalidArgument.
pub fn load(bundle: &Path) -> Result<ContainerSpec> {
    let path = bundle.join("config.json");
    let text =
        std::fs::read(&path).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    parse(&text).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

/// What the engine needs of a spec's text.
pub fn parse(text: &[u8]) -> Result<ContainerSpec> {
    let spec: Spec = serde_json::from_slice(text).map_err(|e| Error::invalid(e.to_string()))?;
    let linux = spec.linux().as_ref();
    let own_pid_ns = linux
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|nss| nss.iter().find(|n| n.typ() == LinuxNamespaceType::Pid))
        .is_some_and(|n| n.path().is_none());
    let cgroup = match linux.and_then(|l| l.cgroups_path().as_ref()) {
        Some(p) => Some(cgroup_rel(&p.to_string_lossy())?),
        None => None,
    };
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    Ok(ContainerSpec {
        cgroup,
        own_pid_ns,
        terminal,
    })
}

/// Gives a container the pod's files, as CRI does for its own pods: with
/// a sandbox shim, containerd leaves `/etc/hostname`, `/etc/hosts`,
/// `/etc/resolv.conf` and `/dev/shm` to the sandbox's owner. Each is a
/// bind mount of the pod's file, added unless the spec already mounts
/// something there (the pod's shm replaces the default tmpfs). The spec is
/// edited as plain JSON so nothing it holds is lost. Returns the
/// destinations added.
pub fn add_pod_mounts(bundle: &Path, pod_files: &[PathBuf]) -> Result<Vec<&'static str>> {
    let path = bundle.join("config.json");
    let text =
        std::fs::read(&path).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    let (data, added) = with_pod_mounts(&text, pod_files)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    if let Some(data) = data {
        let tmp = bundle.join(".config.json.tmp");
        std::fs::write(&tmp, data)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    }
    Ok(added)
}

/// [`add_pod_mounts`] on the spec's text: the new text, if anything was
/// added, and the destinations added.
pub fn with_pod_mounts(
    text: &[u8],
    pod_files: &[PathBuf],
) -> Result<(Option<Vec<u8>>, Vec<&'static str>)> {
    let mut spec: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| Error::invalid(e.to_string()))?;
    let readonly = spec
        .pointer("/root/readonly")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let host_ipc = spec
        .pointer("/linux/namespaces")
        .and_then(|v| v.as_array())
        .is_some_and(|nss| !nss.iter().any(|n| n["type"] == "ipc"));
    let Some(mounts) = spec
        .as_object_mut()
        .map(|o| o.entry("mounts").or_insert_with(|| serde_json::json!([])))
        .and_then(|m| m.as_array_mut())
    else {
        return Err(Error::invalid("mounts is not a list"));
    };
    let file = |name: &str| {
        pod_files
            .iter()
            .find(|f| f.file_name().is_some_and(|n| n == name))
    };
    let mut added = Vec::new();
    for (dest, name, ro) in [
        ("/etc/hostname", "hostname", readonly),
        ("/etc/hosts", "hosts", readonly),
        ("/etc/resolv.conf", "resolv.conf", readonly),
        ("/dev/shm", "shm", false),
    ] {
        let Some(src) = file(name) else { continue };
        if dest == "/dev/shm" && host_ipc {
            continue;
        }
        // The runtime's default /dev/shm is a private tmpfs: the pod's wins
        // (over every such entry: fuzzing found a spec with two, which a
        // second edit would have bound twice). Anything else the spec
        // mounts there stays.
        let default_shm = |m: &serde_json::Value| dest == "/dev/shm" && m["type"] == "tmpfs";
        if mounts
            .iter()
            .any(|m| m["destination"] == dest && !default_shm(m))
        {
            continue;
        }
        mounts.retain(|m| !(m["destination"] == dest && default_shm(m)));
        mounts.push(serde_json::json!({
            "destination": dest,
            "type": "bind",
            "source": src,
            "options": ["rbind", "rprivate", if ro { "ro" } else { "rw" }],
        }));
        added.push(dest);
    }
    if added.is_empty() {
        return Ok((None, added));
    }
    let data = serde_json::to_vec(&spec).map_err(|e| Error::invalid(e.to_string()))?;
    Ok((Some(data), added))
}

/// Checks an exec's process JSON before the runtime sees it.
pub fn check_process(json: &[u8]) -> Result<Process> {
    let p: Process =
        serde_json::from_slice(json).map_err(|e| Error::invalid(format!("exec process: {e}")))?;
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::invalid("exec process: no args"));
    }
    Ok(p)
}

/// Checks Update's resources (OCI `LinuxResources` JSON) and returns them
/// re-encoded, so the runtime gets only what was understood.
pub fn check_resources(json: &[u8]) -> Result<Vec<u8>> {
    let r: LinuxResources = serde_json::from_slice(json)
        .map_err(|e| Error::invalid(format!("update resources: {e}")))?;
    if let Some(cpu) = r.cpu() {
        if cpu.shares() == Some(0) || cpu.quota().is_some_and(|q| q < -1 || q == 0) {
            return Err(Error::invalid(
                "update resources: invalid cpu shares or quota",
            ));
        }
    }
    if let Some(mem) = r.memory() {
        if mem
            .limit()
            .is_some_and(|l| l < -1 || (0..4096).contains(&l))
        {
            return Err(Error::invalid(
                "update resources: memory limit must be -1 or at least 4096 bytes",
            ));
        }
    }
    serde_json::to_vec(&r).map_err(|e| Error::invalid(format!("update resources: {e}")))
}

/// The cgroup a process is in, relative to the hierarchy's root, from
/// `/proc/<pid>/cgroup` text: v1's memory line, or v2's `0::` line.
pub fn proc_cgroup(text: &str, v2: bool) -> Option<PathBuf> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if v2 {
            id == "0" && ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == "memory")
        };
        (hit && path.starts_with('/')).then(|| PathBuf::from(path))
    })
}

/// A cgroupsPath as a path relative to each hierarchy's root: cgroupfs
/// paths as they are, systemd's `slice:prefix:name` expanded the way
/// runc's systemd driver places it.
pub fn cgroup_rel(p: &str) -> Result<PathBuf> {
    if p.contains("..") {
        return Err(Error::invalid(format!("cgroupsPath {p:?} contains ..")));
    }
    let parts: Vec<&str> = p.split(':').collect();
    if parts.len() == 3 && !p.starts_with('/') {
        let (slice, prefix, name) = (parts[0], parts[1], parts[2]);
        let mut rel = expand_slice(if slice.is_empty() {
            "system.slice"
        } else {
            slice
        })?;
        let unit = if name.ends_with(".slice") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        rel.push(unit);
        return Ok(rel);
    }
    let rel = if p.starts_with('/') {
        PathBuf::from(p)
    } else {
        Path::new("/").join(p)
    };
    Ok(rel)
}

/// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`.
fn expand_slice(slice: &str) -> Result<PathBuf> {
    let stem = slice
        .strip_suffix(".slice")
        .ok_or_else(|| Error::invalid(format!("{slice:?} is not a systemd slice")))?;
    let mut out = PathBuf::from("/");
    if stem == "-" {
        return Ok(out);
    }
    let mut acc = String::new();
    for part in stem.split('-') {
        if part.is_empty() {
            return Err(Error::invalid(format!("invalid slice name {slice:?}")));
        }
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(part);
        out.push(format!("{acc}.slice"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_and_systemd_paths() {
        assert_eq!(
            cgroup_rel("/husk-e2e/c1").unwrap(),
            PathBuf::from("/husk-e2e/c1")
        );
        assert_eq!(cgroup_rel("k/c1").unwrap(), PathBuf::from("/k/c1"));
        assert_eq!(
            cgroup_rel("kubepods-besteffort.slice:cri-containerd:abc").unwrap(),
            PathBuf::from("/kubepods.slice/kubepods-besteffort.slice/cri-containerd-abc.scope")
        );
        assert!(cgroup_rel("/a/../b").is_err());
        assert!(cgroup_rel("notaslice:x:y").is_err());
    }

    #[test]
    fn cgroup_of_a_process() {
        let text = "12:pids:/a/b\n9:memory:/husk-e2e/c1\n1:name=systemd:/x\n0::/u/c1\n";
        assert_eq!(
            proc_cgroup(text, false),
            Some(PathBuf::from("/husk-e2e/c1"))
        );
        assert_eq!(proc_cgroup(text, true), Some(PathBuf::from("/u/c1")));
        assert_eq!(proc_cgroup("1:cpu:/x\n", false), None);
    }

    #[test]
    fn resources_are_checked() {
        assert!(check_resources(br#"{"memory":{"limit":104857600}}"#).is_ok());
        assert!(check_resources(br#"{"memory":{"limit":5}}"#).is_err());
        assert!(check_resources(br#"{"cpu":{"shares":0}}"#).is_err());
        assert!(check_resources(b"nope").is_err());
    }

    #[test]
    fn process_needs_args() {
        assert!(check_process(br#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}"#).is_ok());
        assert!(check_process(br#"{"cwd":"/","args":[]}"#).is_err());
        assert!(check_process(b"{").is_err());
    }

    #[test]
    fn pod_files_become_mounts() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("config.json"),
            r#"{"ociVersion":"1.2.1","x-unknown":7,"root":{"path":"rootfs"},
               "mounts":[{"destination":"/etc/hosts","type":"bind","source":"/mine"},
                         {"destination":"/dev/shm","type":"tmpfs","source":"shm"}],
               "linux":{"namespaces":[{"type":"ipc","path":"/proc/1/ns/ipc"}]}}"#,
        )
        .unwrap();
        let pod = ["/b/hostname", "/b/hosts", "/b/resolv.conf", "/b/shm"].map(PathBuf::from);
        let added = add_pod_mounts(d.path(), &pod).unwrap();
        assert_eq!(added, vec!["/etc/hostname", "/etc/resolv.conf", "/dev/shm"]);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(v["x-unknown"], 7, "unknown fields survive");
        let ms = v["mounts"].as_array().unwrap();
        assert_eq!(ms.len(), 4);
        assert!(ms
            .iter()
            .any(|m| m["destination"] == "/etc/hosts" && m["source"] == "/mine"));
        assert!(ms
            .iter()
            .any(|m| m["destination"] == "/dev/shm" && m["source"] == "/b/shm"));
        assert!(
            add_pod_mounts(d.path(), &pod).unwrap().is_empty(),
            "idempotent"
        );
        // Host IPC: no pod shm.
        std::fs::write(
            d.path().join("config.json"),
            r#"{"linux":{"namespaces":[]}}"#,
        )
        .unwrap();
        let added = add_pod_mounts(d.path(), &pod).unwrap();
        assert!(!added.contains(&"/dev/shm"));
    }

    /// Fuzz regression (oci_spec): a spec with two default /dev/shm
    /// tmpfs mounts got the pod's shm bound twice over two edits.
    #[test]
    fn every_default_shm_gives_way_once() {
        let spec = br#"{"mounts":[{"destination":"/dev/shm","type":"tmpfs","source":"shm"},
                                  {"destination":"/dev/shm","type":"tmpfs","source":"shm"}]}"#;
        let pod = [PathBuf::from("/b/shm")];
        let (text, added) = with_pod_mounts(spec, &pod).unwrap();
        assert_eq!(added, vec!["/dev/shm"]);
        let text = text.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["mounts"].as_array().unwrap().len(), 1);
        assert_eq!(with_pod_mounts(&text, &pod).unwrap().0, None);
    }

    #[test]
    fn spec_from_bundle() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(load(d.path()), Err(Error::InvalidArgument(_))));
        std::fs::write(d.path().join("config.json"), "{not json").unwrap();
        assert!(matches!(load(d.path()), Err(Error::InvalidArgument(_))));
        std::fs::write(
            d.path().join("config.json"),
            r#"{"ociVersion":"1.2.1","process":{"terminal":true,"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},
               "root":{"path":"rootfs"},
               "linux":{"cgroupsPath":"/p/c1","namespaces":[{"type":"pid"},{"type":"network","path":"/proc/1/ns/net"}]}}"#,
        )
        .unwrap();
        let s = load(d.path()).unwrap();
        assert_eq!(s.cgroup, Some(PathBuf::from("/p/c1")));
        assert!(s.own_pid_ns);
        assert!(s.terminal);
    }
}
