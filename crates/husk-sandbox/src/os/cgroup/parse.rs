//! Parsers for cgroup stat files, v1 and v2. Pure functions over file text.

use std::collections::BTreeMap;

use crate::metrics::{BlkioEntry, IoEntry};

/// A single number, or `max` (no limit) as 0.
pub fn parse_limit(s: &str) -> u64 {
    let s = s.trim();
    if s == "max" {
        0
    } else {
        s.parse().unwrap_or(0)
    }
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, cpuacct.stat).
pub fn parse_flat_keyed(s: &str) -> BTreeMap<String, u64> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// Space-separated numbers (cpuacct.usage_percpu).
pub fn parse_list(s: &str) -> Vec<u64> {
    s.split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// v1 blkio files: `MAJ:MIN Op value` lines; the `Total` line is dropped.
pub fn parse_blkio(s: &str) -> Vec<BlkioEntry> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let dev = it.next()?;
            let op = it.next()?;
            let value = it.next()?.parse().ok()?;
            let (major, minor) = parse_dev(dev)?;
            Some(BlkioEntry {
                op: op.to_string(),
                major,
                minor,
                value,
            })
        })
        .collect()
}

/// v2 io.stat: `MAJ:MIN rbytes=… wbytes=… rios=… wios=… …` lines.
pub fn parse_io_stat(s: &str) -> Vec<IoEntry> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (major, minor) = parse_dev(it.next()?)?;
            let mut e = IoEntry {
                major,
                minor,
                ..Default::default()
            };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => e.rbytes = v,
                    "wbytes" => e.wbytes = v,
                    "rios" => e.rios = v,
                    "wios" => e.wios = v,
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

fn parse_dev(dev: &str) -> Option<(u64, u64)> {
    let (a, b) = dev.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n"), 0);
        assert_eq!(parse_limit("1024\n"), 1024);
        assert_eq!(parse_limit("garbage"), 0);
    }

    #[test]
    fn keyed_v2_cpu_stat() {
        // cpu.stat as the unified hierarchy on this kind of host prints it.
        let s = "usage_usec 4811384\nuser_usec 2404119\nsystem_usec 2407265\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n";
        let m = parse_flat_keyed(s);
        assert_eq!(m["usage_usec"], 4811384);
        assert_eq!(m["system_usec"], 2407265);
        assert_eq!(m.len(), 8);
    }

    #[test]
    fn blkio() {
        let s = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n";
        let v = parse_blkio(s);
        assert_eq!(v.len(), 6);
        assert_eq!(v[1].op, "Write");
        assert_eq!(v[1].value, 8192);
        assert_eq!((v[0].major, v[0].minor), (8, 0));
    }

    #[test]
    fn io_stat() {
        let s = "253:0 rbytes=1048576 wbytes=4096 rios=12 wios=1 dbytes=0 dios=0\n8:16 rbytes=0 wbytes=0 rios=0 wios=0 dbytes=0 dios=0\n";
        let v = parse_io_stat(s);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].rbytes, 1048576);
        assert_eq!(v[0].wios, 1);
        assert_eq!(v[1].major, 8);
    }

    #[test]
    fn percpu() {
        assert_eq!(parse_list("1 2 3 \n"), vec![1, 2, 3]);
    }
}
