//! The cgroup v1 driver: one directory per mounted hierarchy.

use std::fs;
use std::path::{Path, PathBuf};

use super::{
    kill_pids, mkdir_all, parse_blkio, parse_flat_keyed, parse_limit, parse_list, read_opt,
    read_pids, remove_dirs,
};
use crate::error::OsError;
use crate::metrics::{CgroupStats, Pids, V1Blkio, V1Cpu, V1Memory, V1MemoryEntry, V1Stats};
use crate::os::{CgroupVersion, Cgroups};

/// Mount options of a cgroup v1 mount that do not name a controller.
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "relatime",
    "noatime",
    "nosuid",
    "nodev",
    "noexec",
    "clone_children",
    "xattr",
    "noprefix",
    "cpuset_v2_mode",
];

/// USER_HZ: cpuacct.stat counts in these ticks.
const TICKS_PER_SEC: u64 = 100;

#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CgroupV1 {
    hierarchies: Vec<Hierarchy>,
}

impl CgroupV1 {
    pub fn new(hierarchies: Vec<Hierarchy>) -> Self {
        CgroupV1 { hierarchies }
    }

    /// Finds the mounted v1 hierarchies in /proc/self/mountinfo.
    pub fn from_mountinfo() -> Result<Self, OsError> {
        let text = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| OsError::path("read", "/proc/self/mountinfo", e))?;
        Ok(Self::new(parse_mountinfo(&text)))
    }

    fn dir_of(&self, controller: &str, rel: &Path) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| join(&h.mountpoint, rel))
    }
}

/// v1 cgroup mounts: mount point and the controllers in its super options.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        if post.next() != Some("cgroup") {
            continue;
        }
        let _source = post.next();
        let opts = post.next().unwrap_or("");
        let Some(mountpoint) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let controllers = opts
            .split(',')
            .filter(|o| o.starts_with("name=") || !(o.contains('=') || NOT_CONTROLLERS.contains(o)))
            .map(str::to_string)
            .collect();
        out.push(Hierarchy {
            mountpoint: PathBuf::from(mountpoint),
            controllers,
        });
    }
    out
}

fn join(root: &Path, rel: &Path) -> PathBuf {
    root.join(rel.strip_prefix("/").unwrap_or(rel))
}

/// A new cpuset cgroup starts with no cpus and no mems (unless its parent
/// has clone_children set); copy the parent's.
fn init_cpuset(dir: &Path) -> Result<(), OsError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mut value = read_opt(&parent.join(file))?.unwrap_or_default();
        if value.trim().is_empty() && read_opt(&parent.join(file))?.is_some() {
            // The parent is a cpuset cgroup another pod's create has just
            // made and not yet filled (e2e: ten pods at once under a fresh
            // parent hit this): fill it first, from its own parent.
            init_cpuset(parent)?;
            value = read_opt(&parent.join(file))?.unwrap_or_default();
        }
        let mine = dir.join(file);
        fs::write(&mine, value.trim()).map_err(|e| OsError::path("write", &mine, e))?;
    }
    Ok(())
}

impl Cgroups for CgroupV1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn create(&self, rel: &Path) -> Result<Vec<PathBuf>, OsError> {
        let mut made = Vec::new();
        for h in &self.hierarchies {
            let dir = join(&h.mountpoint, rel);
            let result = mkdir_all(&dir).and_then(|new| {
                let cpuset = h.controllers.iter().any(|c| c == "cpuset");
                if cpuset {
                    for d in &new {
                        if let Err(e) = init_cpuset(d) {
                            let _ = remove_dirs(&new);
                            return Err(e);
                        }
                    }
                }
                Ok(new)
            });
            match result {
                Ok(new) => made.extend(new),
                Err(e) => {
                    let _ = remove_dirs(&made);
                    return Err(e);
                }
            }
        }
        Ok(made)
    }

    /// `tasks`, not `cgroup.procs`: a single thread writing `0` there moves
    /// itself without taking the global threadgroup rwsem, whose write side
    /// waits for an RCU grace period (17 ms here). The holder is a single
    /// thread when it joins, so moving its thread moves the process.
    fn join_files(&self, rel: &Path) -> Vec<PathBuf> {
        self.host_paths(rel)
            .into_iter()
            .map(|d| d.join("tasks"))
            .collect()
    }

    fn pids(&self, rel: &Path) -> Result<Vec<u32>, OsError> {
        let mut out = Vec::new();
        for d in self.host_paths(rel) {
            read_pids(&d.join("cgroup.procs"), &mut out)?;
        }
        Ok(out)
    }

    fn kill_all(&self, rel: &Path, signal: i32) -> Result<(), OsError> {
        kill_pids(&self.pids(rel)?, signal)
    }

    fn remove(&self, created: &[PathBuf]) -> Result<(), OsError> {
        remove_dirs(created)
    }

    fn stats(&self, rel: &Path) -> Result<CgroupStats, OsError> {
        let mut s = V1Stats::default();
        if let Some(d) = self.dir_of("cpuacct", rel) {
            let r = |f: &str| read_opt(&d.join(f));
            s.cpu.usage_total = r("cpuacct.usage")?.map(|v| parse_limit(&v)).unwrap_or(0);
            s.cpu.per_cpu = r("cpuacct.usage_percpu")?
                .map(|v| parse_list(&v))
                .unwrap_or_default();
            if let Some(st) = r("cpuacct.stat")? {
                let m = parse_flat_keyed(&st);
                let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000 / TICKS_PER_SEC);
                s.cpu.usage_user = ns(m.get("user").copied().unwrap_or(0));
                s.cpu.usage_kernel = ns(m.get("system").copied().unwrap_or(0));
            }
        }
        if let Some(d) = self.dir_of("cpu", rel) {
            if let Some(st) = read_opt(&d.join("cpu.stat"))? {
                let m = parse_flat_keyed(&st);
                let g = |k: &str| m.get(k).copied().unwrap_or(0);
                s.cpu = V1Cpu {
                    periods: g("nr_periods"),
                    throttled_periods: g("nr_throttled"),
                    throttled_time: g("throttled_time"),
                    ..s.cpu
                };
            }
        }
        if let Some(d) = self.dir_of("memory", rel) {
            let entry = |prefix: &str| -> Result<V1MemoryEntry, OsError> {
                let r = |f: &str| -> Result<u64, OsError> {
                    Ok(read_opt(&d.join(format!("{prefix}{f}")))?
                        .map(|v| parse_limit(&v))
                        .unwrap_or(0))
                };
                Ok(V1MemoryEntry {
                    usage: r("usage_in_bytes")?,
                    max: r("max_usage_in_bytes")?,
                    limit: r("limit_in_bytes")?,
                    failcnt: r("failcnt")?,
                })
            };
            s.memory = V1Memory {
                usage: entry("memory.")?,
                swap: entry("memory.memsw.")?,
                kernel: entry("memory.kmem.")?,
                stat: read_opt(&d.join("memory.stat"))?
                    .map(|v| parse_flat_keyed(&v))
                    .unwrap_or_default(),
            };
        }
        if let Some(d) = self.dir_of("pids", rel) {
            s.pids = Pids {
                current: read_opt(&d.join("pids.current"))?
                    .map(|v| parse_limit(&v))
                    .unwrap_or(0),
                limit: read_opt(&d.join("pids.max"))?
                    .map(|v| parse_limit(&v))
                    .unwrap_or(0),
            };
        }
        if let Some(d) = self.dir_of("blkio", rel) {
            let r = |f: &str| -> Result<_, OsError> {
                Ok(read_opt(&d.join(f))?
                    .map(|v| parse_blkio(&v))
                    .unwrap_or_default())
            };
            s.blkio = V1Blkio {
                io_service_bytes: r("blkio.throttle.io_service_bytes_recursive")?,
                io_serviced: r("blkio.throttle.io_serviced_recursive")?,
            };
        }
        Ok(CgroupStats::V1(s))
    }

    fn host_paths(&self, rel: &Path) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| join(&h.mountpoint, rel))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo() {
        let text = "\
25 19 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 25 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
34 25 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
35 25 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,nosuid,cpu,cpuacct
";
        let h = parse_mountinfo(text);
        assert_eq!(h.len(), 5);
        assert_eq!(h[0].mountpoint, PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(h[0].controllers, vec!["cpu"]);
        assert_eq!(h[3].controllers, vec!["name=systemd"]);
        assert_eq!(h[4].controllers, vec!["cpu", "cpuacct"]);
    }

    #[test]
    fn stats_from_files() {
        let t = tempfile::tempdir().unwrap();
        let mk = |c: &str| {
            let d = t.path().join(c).join("pod");
            fs::create_dir_all(&d).unwrap();
            d
        };
        let cpuacct = mk("cpuacct");
        fs::write(cpuacct.join("cpuacct.usage"), "123456789\n").unwrap();
        fs::write(
            cpuacct.join("cpuacct.usage_percpu"),
            "100000000 23456789 \n",
        )
        .unwrap();
        fs::write(cpuacct.join("cpuacct.stat"), "user 7\nsystem 3\n").unwrap();
        let mem = mk("memory");
        fs::write(mem.join("memory.usage_in_bytes"), "4096\n").unwrap();
        fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        fs::write(
            mem.join("memory.stat"),
            "cache 0\nrss 4096\ntotal_rss 4096\n",
        )
        .unwrap();
        let pids = mk("pids");
        fs::write(pids.join("pids.current"), "2\n").unwrap();
        fs::write(pids.join("pids.max"), "max\n").unwrap();
        let cg = CgroupV1::new(
            ["cpuacct", "memory", "pids"]
                .iter()
                .map(|c| Hierarchy {
                    mountpoint: t.path().join(c),
                    controllers: vec![c.to_string()],
                })
                .collect(),
        );
        let CgroupStats::V1(s) = cg.stats(Path::new("/pod")).unwrap() else {
            panic!("v1 expected")
        };
        assert_eq!(s.cpu.usage_total, 123456789);
        assert_eq!(s.cpu.per_cpu, vec![100000000, 23456789]);
        assert_eq!(s.cpu.usage_user, 70_000_000);
        assert_eq!(s.cpu.usage_kernel, 30_000_000);
        assert_eq!(s.memory.usage.usage, 4096);
        assert_eq!(s.memory.stat["rss"], 4096);
        assert_eq!(
            s.pids,
            Pids {
                current: 2,
                limit: 0
            }
        );
        assert!(s.blkio.io_service_bytes.is_empty());
    }
}
