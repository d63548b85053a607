//! Runtime options as containerd sends them (on `start`'s stdin and in
//! each Task Create): `cri.runtimeoptions.v1.Options` from CRI (the
//! handler's `options` table as TOML in `config_body`, or a file in
//! `config_path`), or containerd's runc options (`BinaryName` = field 6,
//! `Root` = 7, `SystemdCgroup` = 9).

use containerd_shim_protos::protobuf::CodedInputStream;
use husk_task::RuntimeOptions;

use crate::error::ShimError;

fn bad(e: impl std::fmt::Display) -> ShimError {
    ShimError::Decode(format!("runtime options: {e}"))
}

/// Decodes an options Any; an empty one means defaults.
pub fn decode(type_url: &str, value: &[u8]) -> Result<RuntimeOptions, ShimError> {
    let name = type_url.rsplit('/').next().unwrap_or("");
    match name {
        "" if value.is_empty() => Ok(RuntimeOptions::default()),
        "runtimeoptions.v1.Options" => {
            let (mut path, mut body) = (String::new(), Vec::new());
            fields(value, |n, v| {
                match (n, v) {
                    (2, Field::Bytes(b)) => path = String::from_utf8_lossy(&b).into_owned(),
                    (3, Field::Bytes(b)) => body = b,
                    _ => {}
                }
                Ok(())
            })?;
            let text = if body.is_empty() && !path.is_empty() {
                std::fs::read(&path).map_err(|e| bad(format!("{path}: {e}")))?
            } else {
                body
            };
            let text = String::from_utf8(text).map_err(bad)?;
            Ok(RuntimeOptions::from_toml(&text)?)
        }
        "containerd.runc.v1.Options" | "io.containerd.runc.v1.Options" => {
            let mut o = RuntimeOptions::default();
            fields(value, |n, v| {
                match (n, v) {
                    (6, Field::Bytes(b)) if !b.is_empty() => {
                        o.binary_name = Some(String::from_utf8(b).map_err(bad)?)
                    }
                    (7, Field::Bytes(b)) if !b.is_empty() => {
                        o.root = Some(String::from_utf8(b).map_err(bad)?.into())
                    }
                    (9, Field::Varint(v)) => o.systemd_cgroup = v != 0,
                    _ => {}
                }
                Ok(())
            })?;
            Ok(o)
        }
        other => {
            tracing::debug!(type_url = other, "runtime options of another type ignored");
            Ok(RuntimeOptions::default())
        }
    }
}

enum Field {
    Varint(u64),
    Bytes(Vec<u8>),
}

fn fields(
    buf: &[u8],
    mut f: impl FnMut(u32, Field) -> Result<(), ShimError>,
) -> Result<(), ShimError> {
    let mut is = CodedInputStream::from_bytes(buf);
    while !is.eof().map_err(bad)? {
        let tag = is.read_raw_varint32().map_err(bad)?;
        let (n, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => f(n, Field::Varint(is.read_raw_varint64().map_err(bad)?))?,
            2 => f(n, Field::Bytes(is.read_bytes().map_err(bad)?))?,
            1 => {
                is.read_raw_little_endian64().map_err(bad)?;
            }
            5 => {
                is.read_raw_little_endian32().map_err(bad)?;
            }
            w => return Err(bad(format!("wire type {w}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string_field(n: u8, s: &str) -> Vec<u8> {
        let mut v = vec![(n << 3) | 2, s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn cri_runtime_options() {
        let mut b = string_field(1, "io.containerd.runc.v1.Options");
        b.extend(string_field(
            3,
            "BinaryName = '/usr/sbin/runc'\nSystemdCgroup = false\n",
        ));
        let o = decode("runtimeoptions.v1.Options", &b).unwrap();
        assert_eq!(o.binary(), "/usr/sbin/runc");
        assert!(decode(
            "runtimeoptions.v1.Options",
            &string_field(3, "BinaryName = 1")
        )
        .is_err());
        assert!(decode("runtimeoptions.v1.Options", &[0xff, 0xff]).is_err());
    }

    #[test]
    fn runc_options() {
        let mut b = string_field(6, "/opt/runc");
        b.extend([9 << 3, 1]);
        let o = decode("containerd.runc.v1.Options", &b).unwrap();
        assert_eq!(o.binary(), "/opt/runc");
        assert!(o.systemd_cgroup);
        assert_eq!(decode("", b"").unwrap(), RuntimeOptions::default());
    }
}
