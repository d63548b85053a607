//! Reading what the kernel shows about processes and mounts, for checks,
//! diagnostics, demos and benchmarks: /proc/<pid>/{stat,cmdline,smaps_rollup}
//! and /proc/self/mountinfo. Read-only.

use std::fs;
use std::path::Path;

/// Alive and not a zombie.
pub fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// argv as a list of byte strings (empty if the process is gone).
pub fn argv(pid: u32) -> Vec<Vec<u8>> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        })
        .unwrap_or_default()
}

/// argv joined with spaces.
pub fn cmdline(pid: u32) -> String {
    argv(pid)
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every pid on the host.
pub fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Processes one of whose argv words is exactly `word`.
pub fn processes_with_arg(word: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|p| argv(*p).iter().any(|a| a == word.as_bytes()))
        .collect()
}

/// The children of `pid`'s main thread, from /proc.
pub fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Proportional set size in KiB, from /proc/<pid>/smaps_rollup.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A process's open fd count and resident set size in KiB (VmRSS), 0 for
/// what cannot be read: the two figures a soak watches for growth.
pub fn fds_and_rss_kib(pid: u32) -> (usize, u64) {
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let rss = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    (fds, rss)
}

/// The host's MemAvailable (/proc/meminfo), in KiB; 0 if unreadable.
pub fn mem_available_kib() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Mount points at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    mount_points()
        .into_iter()
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// Mount points whose path contains `needle`.
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    mount_points()
        .into_iter()
        .filter(|m| m.contains(needle))
        .collect()
}

fn mount_points() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(!argv(me).is_empty());
        assert!(all_pids().contains(&me));
        assert!(pss_kib(me).is_some_and(|k| k > 0));
        assert!(!mounts_under(Path::new("/")).is_empty());
    }
}
