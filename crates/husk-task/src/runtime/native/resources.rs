//! OCI `LinuxResources` as cgroup file writes, for v1 and v2, and their
//! application to a container's cgroup directories. The mapping is pure
//! (tested on both versions); applying finds, for each file, the
//! directory of the container that has it.

use std::path::{Path, PathBuf};

use husk_sandbox::os::CgroupVersion;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

/// One write: the file name inside a container cgroup, and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub file: String,
    pub value: String,
}

fn w(file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        file: file.into(),
        value: value.to_string(),
    }
}

fn limit(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// The writes for `r`, in the order they must happen.
pub fn writes(version: CgroupVersion, r: &LinuxResources) -> Vec<Write> {
    match version {
        CgroupVersion::V1 => v1(r),
        CgroupVersion::V2 => v2(r),
    }
}

/// The files both versions name alike.
fn cpuset_and_pids(r: &LinuxResources, out: &mut Vec<Write>) {
    if let Some(c) = r.cpu() {
        if let Some(v) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset.cpus", v));
        }
        if let Some(v) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset.mems", v));
        }
    }
    if let Some(p) = r.pids() {
        if p.limit() != 0 {
            out.push(w("pids.max", limit(p.limit())));
        }
    }
}

fn v1(r: &LinuxResources) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        // The combined limit must never sit below the memory limit: a
        // raise writes memsw first, a cut writes the limit first (the
        // applier retries the other order).
        if let Some(swap) = m.swap() {
            out.push(w("memory.memsw.limit_in_bytes", swap));
        }
        if let Some(l) = m.limit() {
            out.push(w("memory.limit_in_bytes", l));
        }
        if let Some(v) = m.reservation() {
            out.push(w("memory.soft_limit_in_bytes", v));
        }
        if let Some(v) = m.swappiness().filter(|s| *s <= 100) {
            out.push(w("memory.swappiness", v));
        }
        if m.disable_oom_killer() == Some(true) {
            out.push(w("memory.oom_control", 1));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(v) = c.shares().filter(|s| *s != 0) {
            out.push(w("cpu.shares", v));
        }
        if let Some(v) = c.period().filter(|p| *p != 0) {
            out.push(w("cpu.cfs_period_us", v));
        }
        if let Some(v) = c.quota().filter(|q| *q != 0) {
            out.push(w("cpu.cfs_quota_us", v));
        }
        if let Some(v) = c.realtime_period().filter(|p| *p != 0) {
            out.push(w("cpu.rt_period_us", v));
        }
        if let Some(v) = c.realtime_runtime().filter(|p| *p != 0) {
            out.push(w("cpu.rt_runtime_us", v));
        }
    }
    cpuset_and_pids(r, &mut out);
    if let Some(b) = r.block_io() {
        if let Some(v) = b.weight() {
            out.push(w("blkio.weight", v));
        }
        if let Some(v) = b.leaf_weight() {
            out.push(w("blkio.leaf_weight", v));
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(v) = d.weight() {
                out.push(w(
                    "blkio.weight_device",
                    format!("{}:{} {v}", d.major(), d.minor()),
                ));
            }
        }
        for (file, list) in [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ] {
            for d in list.iter().flatten() {
                out.push(w(file, format!("{}:{} {}", d.major(), d.minor(), d.rate())));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        out.push(w(
            format!("hugetlb.{}.limit_in_bytes", h.page_size()),
            h.limit(),
        ));
    }
    for d in r.devices().iter().flatten() {
        let file = if d.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        out.push(w(file, device_rule(d)));
    }
    out
}

/// Devices every container may use whatever its spec's rules say, as
/// runc allows them: mknod of any node, the standard character devices
/// and ptys.
pub const DEFAULT_ALLOWED: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// Writes [`DEFAULT_ALLOWED`] after the spec's own rules (v1).
pub fn allow_default_devices(dirs: &[PathBuf]) -> Result<(), String> {
    let Some(file) = dirs
        .iter()
        .map(|d| d.join("devices.allow"))
        .find(|p| p.exists())
    else {
        return Ok(());
    };
    for rule in DEFAULT_ALLOWED {
        std::fs::write(&file, rule)
            .map_err(|e| format!("write {rule:?} to {}: {e}", file.display()))?;
    }
    Ok(())
}

/// A device rule as the v1 devices controller reads it.
pub fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let kind = match d.typ() {
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::P) => 'p',
        _ => 'a',
    };
    let num = |n: Option<i64>| {
        n.filter(|v| *v >= 0)
            .map_or("*".to_string(), |v| v.to_string())
    };
    let access = d.access().clone().unwrap_or_else(|| "rwm".into());
    if kind == 'a' && d.major().is_none() && d.minor().is_none() {
        return "a".into();
    }
    format!("{kind} {}:{} {access}", num(d.major()), num(d.minor()))
}

/// cgroup v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

fn v2(r: &LinuxResources) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            out.push(w("memory.max", limit(l)));
        }
        if let Some(swap) = m.swap() {
            // OCI's swap is memory+swap; v2 counts swap alone.
            let v = match (swap, m.limit()) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l > 0 => (s - l).max(0).to_string(),
                (s, _) => s.to_string(),
            };
            out.push(w("memory.swap.max", v));
        }
        if let Some(v) = m.reservation() {
            out.push(w("memory.low", v));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            out.push(w("cpu.weight", shares_to_weight(s)));
        }
        let quota = c.quota().filter(|q| *q != 0);
        let period = c.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let q = quota.map_or("max".to_string(), limit);
            out.push(w("cpu.max", format!("{q} {}", period.unwrap_or(100_000))));
        }
    }
    cpuset_and_pids(r, &mut out);
    if let Some(b) = r.block_io() {
        if let Some(v) = b.weight() {
            // blkio.weight 10..1000 to io.weight 1..10000.
            out.push(w(
                "io.weight",
                1 + (u64::from(v.clamp(10, 1000)) - 10) * 9999 / 990,
            ));
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        out.push(w(format!("hugetlb.{}.max", h.page_size()), h.limit()));
    }
    let mut unified: Vec<_> = r.unified().iter().flatten().collect();
    unified.sort();
    for (k, v) in unified {
        out.push(w(k.as_str(), v));
    }
    out
}

/// Applies `r` to the container cgroup whose directories are `dirs`. A
/// file no directory has belongs to a controller this host does not
/// mount: skipped, as runc does.
pub fn apply(version: CgroupVersion, dirs: &[PathBuf], r: &LinuxResources) -> Result<(), String> {
    let writes = writes(version, r);
    let find = |file: &str| dirs.iter().map(|d| d.join(file)).find(|p| p.exists());
    let put = |path: &Path, value: &str| {
        std::fs::write(path, value)
            .map_err(|e| format!("write {value:?} to {}: {e}", path.display()))
    };
    let mut i = 0;
    while i < writes.len() {
        let cur = &writes[i];
        let Some(path) = find(&cur.file) else {
            if cur.file.starts_with("devices.") && version == CgroupVersion::V2 {
                tracing::debug!("device rules on cgroup v2 need eBPF; not applied");
            }
            i += 1;
            continue;
        };
        if let Err(e) = put(&path, &cur.value) {
            // memsw before the limit failed: the limit must move first.
            let next = writes.get(i + 1);
            if cur.file == "memory.memsw.limit_in_bytes"
                && next.is_some_and(|n| n.file == "memory.limit_in_bytes")
            {
                if let (Some(n), Some(lp)) = (next, find("memory.limit_in_bytes")) {
                    put(&lp, &n.value)?;
                    put(&path, &cur.value)?;
                    i += 2;
                    continue;
                }
            }
            return Err(e);
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn files(ws: &[Write]) -> Vec<(&str, &str)> {
        ws.iter()
            .map(|w| (w.file.as_str(), w.value.as_str()))
            .collect()
    }

    const CRI: &str = r#"{
        "devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                   {"allow":true,"type":"c","major":136,"access":"rwm"}],
        "memory":{"limit":104857600,"swap":104857600},
        "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0"},
        "pids":{"limit":-1},
        "hugepageLimits":[{"pageSize":"2MB","limit":0}]}"#;

    #[test]
    fn v1_files_in_order() {
        let ws = writes(CgroupVersion::V1, &res(CRI));
        assert_eq!(
            files(&ws),
            vec![
                ("memory.memsw.limit_in_bytes", "104857600"),
                ("memory.limit_in_bytes", "104857600"),
                ("cpu.shares", "512"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
                ("cpuset.cpus", "0"),
                ("pids.max", "max"),
                ("hugetlb.2MB.limit_in_bytes", "0"),
                ("devices.deny", "a"),
                ("devices.allow", "c 1:3 rwm"),
                ("devices.allow", "c 136:* rwm"),
            ]
        );
    }

    #[test]
    fn v2_files_in_order() {
        let ws = writes(CgroupVersion::V2, &res(CRI));
        assert_eq!(
            files(&ws),
            vec![
                ("memory.max", "104857600"),
                ("memory.swap.max", "0"),
                ("cpu.weight", "20"),
                ("cpu.max", "50000 100000"),
                ("cpuset.cpus", "0"),
                ("pids.max", "max"),
                ("hugetlb.2MB.max", "0"),
            ]
        );
        let ws = writes(
            CgroupVersion::V2,
            &res(r#"{"cpu":{"quota":-1},"unified":{"memory.high":"50000000"}}"#),
        );
        assert_eq!(
            files(&ws),
            vec![("cpu.max", "max 100000"), ("memory.high", "50000000")]
        );
    }

    #[test]
    fn shares_map_to_weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn apply_writes_where_the_file_is_and_skips_missing_controllers() {
        let d = tempfile::tempdir().unwrap();
        let mem = d.path().join("memory/c");
        let cpu = d.path().join("cpu/c");
        for (dir, f) in [(&mem, "memory.limit_in_bytes"), (&cpu, "cpu.shares")] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(f), "").unwrap();
        }
        let r = res(r#"{"memory":{"limit":1000},"cpu":{"shares":10},"pids":{"limit":5}}"#);
        apply(CgroupVersion::V1, &[mem.clone(), cpu.clone()], &r).unwrap();
        assert_eq!(
            std::fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap(),
            "1000"
        );
        assert_eq!(
            std::fs::read_to_string(cpu.join("cpu.shares")).unwrap(),
            "10"
        );
        assert!(!mem.join("pids.max").exists());
    }
}
