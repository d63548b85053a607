//! Decoding CRI's `runtime.v1.PodSandboxConfig` from protobuf bytes.
//!
//! Only the fields a sandbox honours are read; everything else is skipped
//! by wire type, so newer CRI versions decode too. A small hand-written
//! reader keeps the gRPC/prost stack out of the shim binary, which is
//! exec'd twice per pod.

use std::collections::BTreeMap;

use husk_sandbox::{Dns, NsMode, PodConfig};

use crate::error::ShimError;

/// The type URLs containerd uses for PodSandboxConfig.
pub fn is_pod_config(type_url: &str) -> bool {
    type_url.trim_start_matches("type.googleapis.com/") == "runtime.v1.PodSandboxConfig"
        || type_url.ends_with("/runtime.v1.PodSandboxConfig")
}

#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
}

fn bad(what: &str) -> ShimError {
    ShimError::Decode(format!("PodSandboxConfig: {what}"))
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn varint(&mut self) -> Result<u64, ShimError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| bad("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ShimError> {
        if n > self.buf.len() {
            return Err(bad("field runs past the end"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// The next (field number, value), or None at the end.
    fn next(&mut self) -> Result<Option<(u64, Value<'a>)>, ShimError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(bad("field number 0"));
        }
        let v = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("length too large"))?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            w => return Err(bad(&format!("unsupported wire type {w}"))),
        };
        Ok(Some((field, v)))
    }
}

fn string(v: Value<'_>, what: &str) -> Result<String, ShimError> {
    match v {
        Value::Bytes(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| bad(&format!("{what} is not UTF-8")))
        }
        _ => Err(bad(&format!("{what} has the wrong wire type"))),
    }
}

fn bytes<'a>(v: Value<'a>, what: &str) -> Result<&'a [u8], ShimError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(bad(&format!("{what} has the wrong wire type"))),
    }
}

fn map_entry(b: &[u8]) -> Result<(String, String), ShimError> {
    let mut r = Reader::new(b);
    let (mut k, mut v) = (String::new(), String::new());
    while let Some((f, val)) = r.next()? {
        match f {
            1 => k = string(val, "map key")?,
            2 => v = string(val, "map value")?,
            _ => {}
        }
    }
    Ok((k, v))
}

fn ns_mode(v: Value<'_>) -> Result<NsMode, ShimError> {
    match v {
        // POD = 0, CONTAINER = 1, NODE = 2, TARGET = 3
        Value::Varint(2) => Ok(NsMode::Node),
        Value::Varint(0 | 1 | 3) => Ok(NsMode::Pod),
        Value::Varint(n) => Err(bad(&format!("unknown namespace mode {n}"))),
        _ => Err(bad("namespace mode has the wrong wire type")),
    }
}

/// Decodes the bytes of a PodSandboxConfig.
pub fn decode_pod_config(buf: &[u8]) -> Result<PodConfig, ShimError> {
    let mut pod = PodConfig::default();
    let mut r = Reader::new(buf);
    while let Some((f, v)) = r.next()? {
        match f {
            1 => {
                let mut m = Reader::new(bytes(v, "metadata")?);
                while let Some((f, v)) = m.next()? {
                    match f {
                        1 => pod.name = string(v, "metadata.name")?,
                        2 => pod.uid = string(v, "metadata.uid")?,
                        3 => pod.namespace = string(v, "metadata.namespace")?,
                        _ => {}
                    }
                }
            }
            2 => pod.hostname = string(v, "hostname")?,
            4 => {
                let mut d = Reader::new(bytes(v, "dns_config")?);
                let mut dns = Dns::default();
                while let Some((f, v)) = d.next()? {
                    match f {
                        1 => dns.servers.push(string(v, "dns server")?),
                        2 => dns.searches.push(string(v, "dns search")?),
                        3 => dns.options.push(string(v, "dns option")?),
                        _ => {}
                    }
                }
                pod.dns = Some(dns);
            }
            6 => {
                let (k, val) = map_entry(bytes(v, "labels")?)?;
                pod.labels.insert(k, val);
            }
            8 => decode_linux(bytes(v, "linux")?, &mut pod)?,
            _ => {}
        }
    }
    Ok(pod)
}

fn decode_linux(b: &[u8], pod: &mut PodConfig) -> Result<(), ShimError> {
    let mut r = Reader::new(b);
    let mut sysctls = BTreeMap::new();
    while let Some((f, v)) = r.next()? {
        match f {
            1 => pod.cgroup_parent = string(v, "linux.cgroup_parent")?,
            2 => {
                let mut sc = Reader::new(bytes(v, "linux.security_context")?);
                while let Some((f, v)) = sc.next()? {
                    if f == 1 {
                        let mut ns = Reader::new(bytes(v, "namespace_options")?);
                        while let Some((f, v)) = ns.next()? {
                            match f {
                                1 => pod.network = ns_mode(v)?,
                                2 => pod.pid = ns_mode(v)?,
                                3 => pod.ipc = ns_mode(v)?,
                                _ => {}
                            }
                        }
                    }
                }
            }
            3 => {
                let (k, val) = map_entry(bytes(v, "linux.sysctls")?)?;
                sysctls.insert(k, val);
            }
            _ => {}
        }
    }
    pod.sysctls = sysctls;
    Ok(())
}

/// Encoding, for huskctl and tests: the same subset, in CRI's field numbers.
pub mod encode {
    use husk_sandbox::{NsMode, PodConfig};

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    fn num(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }

    fn entry(k: &str, v: &str) -> Vec<u8> {
        let mut e = Vec::new();
        bytes(&mut e, 1, k.as_bytes());
        bytes(&mut e, 2, v.as_bytes());
        e
    }

    fn mode(m: NsMode) -> u64 {
        match m {
            NsMode::Pod => 0,
            NsMode::Node => 2,
        }
    }

    pub fn pod_config(p: &PodConfig) -> Vec<u8> {
        let mut out = Vec::new();
        let mut md = Vec::new();
        bytes(&mut md, 1, p.name.as_bytes());
        bytes(&mut md, 2, p.uid.as_bytes());
        bytes(&mut md, 3, p.namespace.as_bytes());
        bytes(&mut out, 1, &md);
        if !p.hostname.is_empty() {
            bytes(&mut out, 2, p.hostname.as_bytes());
        }
        if let Some(dns) = &p.dns {
            let mut d = Vec::new();
            for s in &dns.servers {
                bytes(&mut d, 1, s.as_bytes());
            }
            for s in &dns.searches {
                bytes(&mut d, 2, s.as_bytes());
            }
            for s in &dns.options {
                bytes(&mut d, 3, s.as_bytes());
            }
            bytes(&mut out, 4, &d);
        }
        for (k, v) in &p.labels {
            bytes(&mut out, 6, &entry(k, v));
        }
        let mut linux = Vec::new();
        if !p.cgroup_parent.is_empty() {
            bytes(&mut linux, 1, p.cgroup_parent.as_bytes());
        }
        let mut ns = Vec::new();
        num(&mut ns, 1, mode(p.network));
        num(&mut ns, 2, mode(p.pid));
        num(&mut ns, 3, mode(p.ipc));
        let mut sc = Vec::new();
        bytes(&mut sc, 1, &ns);
        bytes(&mut linux, 2, &sc);
        for (k, v) in &p.sysctls {
            bytes(&mut linux, 3, &entry(k, v));
        }
        bytes(&mut out, 8, &linux);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use husk_sandbox::Dns;

    fn sample() -> PodConfig {
        PodConfig {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u-1".into(),
            hostname: "web-0".into(),
            dns: Some(Dns {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            cgroup_parent: "/kubepods/besteffort/podu-1".into(),
            network: NsMode::Pod,
            pid: NsMode::Node,
            ipc: NsMode::Pod,
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            labels: [("app".to_string(), "web".to_string())].into(),
        }
    }

    #[test]
    fn round_trip() {
        let p = sample();
        assert_eq!(decode_pod_config(&encode::pod_config(&p)).unwrap(), p);
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(decode_pod_config(&[]).unwrap(), PodConfig::default());
    }

    #[test]
    fn skips_unknown_fields() {
        let mut b = encode::pod_config(&sample());
        // field 7 (annotations) as bytes, field 99 as varint, field 98 fixed32
        b.extend_from_slice(&[0x3a, 0x02, 0x0a, 0x00]);
        b.extend_from_slice(&[0x98, 0x06, 0x05]);
        b.extend_from_slice(&[0x95, 0x06, 1, 2, 3, 4]);
        assert_eq!(decode_pod_config(&b).unwrap(), sample());
    }

    #[test]
    fn garbage_is_invalid_argument() {
        for g in [
            &b"\xff\xff\xff"[..],
            b"\x12\x10abc",
            b"\x0f",
            b"\x12\x02\xff\xfe",
            b"\x00\x01",
        ] {
            assert!(
                matches!(decode_pod_config(g), Err(ShimError::Decode(_))),
                "{g:?}"
            );
        }
    }

    #[test]
    fn every_prefix_decodes_or_errors_without_panic() {
        let b = encode::pod_config(&sample());
        for n in 0..b.len() {
            let _ = decode_pod_config(&b[..n]);
        }
    }

    #[test]
    fn type_urls() {
        assert!(is_pod_config("runtime.v1.PodSandboxConfig"));
        assert!(is_pod_config(
            "type.googleapis.com/runtime.v1.PodSandboxConfig"
        ));
        assert!(!is_pod_config("runtime.v1.ContainerConfig"));
    }
}
