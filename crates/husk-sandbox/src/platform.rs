//! The host platform in containerd's (Go's) naming.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: String,
}

/// Maps Rust's target names to GOARCH and containerd's default variant.
pub fn go_arch(arch: &str) -> (&'static str, &'static str) {
    match arch {
        "x86_64" => ("amd64", ""),
        "x86" => ("386", ""),
        "aarch64" => ("arm64", "v8"),
        "arm" => ("arm", "v7"),
        "powerpc64" => {
            if cfg!(target_endian = "little") {
                ("ppc64le", "")
            } else {
                ("ppc64", "")
            }
        }
        "riscv64" => ("riscv64", ""),
        "s390x" => ("s390x", ""),
        "loongarch64" => ("loong64", ""),
        "mips64" => ("mips64", ""),
        _ => ("unknown", ""),
    }
}

pub fn host() -> Platform {
    let (architecture, variant) = go_arch(std::env::consts::ARCH);
    Platform {
        os: std::env::consts::OS.to_string(),
        architecture: architecture.to_string(),
        variant: variant.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(go_arch("x86_64"), ("amd64", ""));
        assert_eq!(go_arch("aarch64"), ("arm64", "v8"));
        assert_eq!(host().os, "linux");
    }
}
