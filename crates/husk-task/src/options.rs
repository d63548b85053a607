//! Runtime options: which OCI runtime binary runs a container, where its
//! state lives, and whether it drives cgroups through systemd. CRI hands a
//! handler's `options` table over as TOML (`cri.runtimeoptions.v1.Options`
//! `config_body`), with the names containerd's runc options use.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RuntimeOptions {
    /// The runtime binary (`runc` in PATH when unset).
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

    pub fn binary(&self) -> &str {
        self.binary_name.as_deref().unwrap_or("runc")
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
        assert_eq!(RuntimeOptions::from_toml("").unwrap().binary(), "runc");
    }

    #[test]
    fn rejects_bad_options() {
        assert!(RuntimeOptions::from_toml("BinaryName = 3").is_err());
        assert!(RuntimeOptions::from_toml("BinaryName = ''").is_err());
        assert!(RuntimeOptions::from_toml("Root = 'rel'").is_err());
        assert!(RuntimeOptions::from_toml("not toml =").is_err());
    }
}
