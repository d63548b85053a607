//! Runtime options: which OCI runtime binary runs a container, where its
//! state lives, and whether it drives cgroups through systemd. CRI hands a
//! handler's `options` table over as TOML (`cri.runtimeoptions.v1.Options`
//! `config_body`), with the names containerd's runc options use.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RuntimeOptions {
    /// The runtime: `husk` (husk's own, the default when unset) or a
    /// binary with runc's command line, such as `runc`.
    #[serde(rename = "BinaryName", default)]
    pub binary_name: Option<String>,
    /// The runtime's state root (`<run root>/runc/<namespace>` when unset).
    #[serde(rename = "Root", default)]
    pub root: Option<PathBuf>,
    #[serde(rename = "SystemdCgroup", default)]
    pub systemd_cgroup: bool,
}

impl RuntimeOptions {
    /// Parses the handler's options table. Unknown keys (containerd's
    /// runc options have more) are ignored; known keys of the wrong type
    /// are an error.
    pub fn from_toml(body: &str) -> Result<Self> {
        let opts: RuntimeOptions =
            toml::from_str(body).map_err(|e| Error::invalid(format!("runtime options: {e}")))?;
        if let Some(b) = &opts.binary_name {
            if b.is_empty() || b.contains('\0') {
                return Err(Error::invalid("runtime options: BinaryName is empty"));
            }
        }
        if let Some(r) = &opts.root {
            if !r.is_absolute() {
                return Err(Error::invalid(format!(
                    "runtime options: Root {} must be absolute",
                    r.display()
                )));
            }
        }
        Ok(opts)
    }

    /// Fills what containerd left unset from the node's defaults.
    pub fn or(self, defaults: &RuntimeOptions) -> RuntimeOptions {
        RuntimeOptions {
            binary_name: self.binary_name.or_else(|| defaults.binary_name.clone()),
            root: self.root.or_else(|| defaults.root.clone()),
            systemd_cgroup: self.systemd_cgroup || defaults.systemd_cgroup,
        }
    }

    /// The node's defaults: the TOML file `path`, if it exists.
    pub fn load(path: &std::path::Path) -> Result<RuntimeOptions> {
        match std::fs::read_to_string(path) {
            Ok(s) => RuntimeOptions::from_toml(&s)
                .map_err(|e| Error::invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RuntimeOptions::default()),
            Err(e) => Err(Error::invalid(format!("{}: {e}", path.display()))),
        }
    }

    pub fn binary(&self) -> &str {
        self.binary_name
            .as_deref()
            .unwrap_or(crate::runtime::native::NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_containerd_runc_option_names() {
        let o = RuntimeOptions::from_toml(
            "BinaryName = '/usr/sbin/runc'\nSystemdCgroup = true\nRoot = '/run/x'\nNoPivotRoot = false\n",
        )
        .unwrap();
        assert_eq!(o.binary(), "/usr/sbin/runc");
        assert!(o.systemd_cgroup);
        assert_eq!(o.root, Some(PathBuf::from("/run/x")));
        assert_eq!(RuntimeOptions::from_toml("").unwrap().binary(), "husk");
    }

    #[test]
    fn containerd_options_win_over_node_defaults() {
        let node =
            RuntimeOptions::from_toml("BinaryName = '/opt/runc'\nSystemdCgroup = true").unwrap();
        assert_eq!(RuntimeOptions::default().or(&node), node);
        let mine = RuntimeOptions::from_toml("BinaryName = '/usr/sbin/runc'").unwrap();
        assert_eq!(mine.or(&node).binary(), "/usr/sbin/runc");
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            RuntimeOptions::load(&d.path().join("none")).unwrap(),
            RuntimeOptions::default()
        );
        std::fs::write(d.path().join("bad"), "BinaryName = 1").unwrap();
        assert!(RuntimeOptions::load(&d.path().join("bad")).is_err());
    }

    #[test]
    fn rejects_bad_options() {
        assert!(RuntimeOptions::from_toml("BinaryName = 3").is_err());
        assert!(RuntimeOptions::from_toml("BinaryName = ''").is_err());
        assert!(RuntimeOptions::from_toml("Root = 'rel'").is_err());
        assert!(RuntimeOptions::from_toml("not toml =").is_err());
    }
}
