//! What a caller asks for: the domain form of CreateSandbox.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// How a pod-level namespace is provided, after CRI's NamespaceMode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NsMode {
    /// A namespace of the pod's own (CRI POD, CONTAINER and TARGET at pod level).
    #[default]
    Pod,
    /// The host's namespace (CRI NODE).
    Node,
}

/// Where the pod's network namespace comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// Join the namespace file containerd created (CNI ran in it).
    Join(PathBuf),
    /// A fresh, empty namespace of the pod's own.
    New,
    /// The host's network (hostNetwork pods).
    Host,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// The parts of CRI's PodSandboxConfig that the sandbox honours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodConfig {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub hostname: String,
    pub dns: Option<Dns>,
    pub cgroup_parent: String,
    pub network: NsMode,
    pub pid: NsMode,
    pub ipc: NsMode,
    pub sysctls: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// One containerd mount: type, source, target (inside the rootfs) and options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub target: String,
    pub options: Vec<String>,
}

/// A validated-on-create request for a new sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<Mount>,
    /// `None` when the caller gave no netns path: then the pod config decides.
    pub netns_path: Option<PathBuf>,
    pub pod: PodConfig,
    pub annotations: BTreeMap<String, String>,
}

impl CreateRequest {
    /// The network the pod gets: a given path wins; without one, hostNetwork
    /// pods share the host's and every other pod gets a fresh namespace.
    pub fn network(&self) -> Result<Network, Error> {
        match (&self.netns_path, self.pod.network) {
            (Some(_), NsMode::Node) => Err(Error::invalid(
                "netns_path given for a pod that asks for host networking",
            )),
            (Some(p), NsMode::Pod) => Ok(Network::Join(p.clone())),
            (None, NsMode::Node) => Ok(Network::Host),
            (None, NsMode::Pod) => Ok(Network::New),
        }
    }
}

/// Namespaced sysctls a pod may set (Kubernetes' "safe" and "unsafe but
/// namespaced" sets). Anything else would change the host.
pub fn check_sysctl(name: &str, value: &str, network: &Network) -> Result<(), Error> {
    let bad_name = name.is_empty()
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains("..")
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if bad_name {
        return Err(Error::invalid(format!("sysctl name {name:?} is malformed")));
    }
    let norm = name.replace('/', ".");
    let ipc = matches!(
        norm.as_str(),
        "kernel.shm_rmid_forced"
            | "kernel.shmmax"
            | "kernel.shmall"
            | "kernel.shmmni"
            | "kernel.sem"
    ) || norm.starts_with("kernel.msg")
        || norm.starts_with("fs.mqueue.");
    let net = norm.starts_with("net.");
    if !ipc && !net {
        return Err(Error::invalid(format!(
            "sysctl {name:?} is not namespaced: a pod may set only net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.*"
        )));
    }
    if net && *network == Network::Host {
        return Err(Error::invalid(format!(
            "sysctl {name:?} would change the host's network: the pod uses host networking"
        )));
    }
    if value.contains('\n') || value.contains('\0') {
        return Err(Error::invalid(format!(
            "sysctl {name:?} value is malformed"
        )));
    }
    Ok(())
}

/// A hostname the kernel will take and a resolver will read.
pub fn check_hostname(h: &str) -> Result<(), Error> {
    if h.len() > 64 {
        return Err(Error::invalid(format!(
            "hostname {h:?} is longer than 64 characters"
        )));
    }
    if !h
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(Error::invalid(format!(
            "hostname {h:?} has characters other than [A-Za-z0-9.-_]"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(netns: Option<&str>, mode: NsMode) -> CreateRequest {
        CreateRequest {
            id: "a".into(),
            bundle: "/b".into(),
            rootfs: vec![],
            netns_path: netns.map(PathBuf::from),
            pod: PodConfig {
                network: mode,
                ..Default::default()
            },
            annotations: Default::default(),
        }
    }

    #[test]
    fn network_choice() {
        assert_eq!(
            req(Some("/n"), NsMode::Pod).network().unwrap(),
            Network::Join("/n".into())
        );
        assert_eq!(req(None, NsMode::Pod).network().unwrap(), Network::New);
        assert_eq!(req(None, NsMode::Node).network().unwrap(), Network::Host);
        assert!(req(Some("/n"), NsMode::Node).network().is_err());
    }

    #[test]
    fn sysctls() {
        let n = Network::New;
        assert!(check_sysctl("net.ipv4.ip_forward", "1", &n).is_ok());
        assert!(check_sysctl("net/ipv4/ip_forward", "1", &n).is_ok());
        assert!(check_sysctl("kernel.shm_rmid_forced", "1", &n).is_ok());
        assert!(check_sysctl("kernel.hostname", "x", &n).is_err());
        assert!(check_sysctl("vm.swappiness", "1", &n).is_err());
        assert!(check_sysctl("net..x", "1", &n).is_err());
        assert!(check_sysctl("net.ipv4.ip_forward", "1", &Network::Host).is_err());
        assert!(check_sysctl("net.ipv4.ip_forward", "1\n2", &n).is_err());
    }

    #[test]
    fn hostnames() {
        assert!(check_hostname("pod-1.example").is_ok());
        assert!(check_hostname("").is_ok());
        assert!(check_hostname("a b").is_err());
        assert!(check_hostname(&"a".repeat(65)).is_err());
    }
}
