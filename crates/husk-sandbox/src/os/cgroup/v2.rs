//! The cgroup v2 driver: one directory in the unified hierarchy.

use std::fs;
use std::path::{Path, PathBuf};

use super::{
    kill_pids, mkdir_all, parse_flat_keyed, parse_io_stat, parse_limit, read_opt, read_pids,
    remove_dirs,
};
use crate::error::OsError;
use crate::metrics::{CgroupStats, Pids, V2Cpu, V2Memory, V2Stats};
use crate::os::{CgroupVersion, Cgroups};

#[derive(Debug, Clone)]
pub struct CgroupV2 {
    root: PathBuf,
}

impl CgroupV2 {
    pub fn new(root: PathBuf) -> Self {
        CgroupV2 { root }
    }

    fn dir(&self, rel: &Path) -> PathBuf {
        self.root.join(rel.strip_prefix("/").unwrap_or(rel))
    }

    /// Delegates every available controller down to `dir`'s parent, so
    /// the pod cgroup gets cpu, memory, pids and io files where the host
    /// has them. Best effort: a controller the host keeps is skipped.
    fn enable_controllers(&self, dir: &Path) {
        let mut chain = Vec::new();
        let mut p = dir.parent();
        while let Some(d) = p {
            if !d.starts_with(&self.root) {
                break;
            }
            chain.push(d.to_path_buf());
            p = d.parent();
        }
        for d in chain.iter().rev() {
            let Ok(Some(avail)) = read_opt(&d.join("cgroup.controllers")) else {
                continue;
            };
            for c in avail.split_whitespace() {
                let _ = fs::write(d.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
    }
}

/// Reads a v2 stats directory. Files of absent controllers read as zero.
pub fn read_v2_stats(d: &Path) -> Result<V2Stats, OsError> {
    let keyed = |f: &str| -> Result<_, OsError> {
        Ok(read_opt(&d.join(f))?
            .map(|v| parse_flat_keyed(&v))
            .unwrap_or_default())
    };
    let one = |f: &str| -> Result<u64, OsError> {
        Ok(read_opt(&d.join(f))?.map(|v| parse_limit(&v)).unwrap_or(0))
    };
    let cpu = keyed("cpu.stat")?;
    let g = |k: &str| cpu.get(k).copied().unwrap_or(0);
    Ok(V2Stats {
        cpu: V2Cpu {
            usage_usec: g("usage_usec"),
            user_usec: g("user_usec"),
            system_usec: g("system_usec"),
            nr_periods: g("nr_periods"),
            nr_throttled: g("nr_throttled"),
            throttled_usec: g("throttled_usec"),
        },
        memory: V2Memory {
            usage: one("memory.current")?,
            usage_limit: one("memory.max")?,
            swap_usage: one("memory.swap.current")?,
            swap_limit: one("memory.swap.max")?,
            stat: keyed("memory.stat")?,
            events: keyed("memory.events")?,
        },
        pids: Pids {
            current: one("pids.current")?,
            limit: one("pids.max")?,
        },
        io: read_opt(&d.join("io.stat"))?
            .map(|v| parse_io_stat(&v))
            .unwrap_or_default(),
    })
}

impl Cgroups for CgroupV2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn create(&self, rel: &Path) -> Result<Vec<PathBuf>, OsError> {
        let dir = self.dir(rel);
        let made = mkdir_all(&dir)?;
        self.enable_controllers(&dir);
        Ok(made)
    }

    fn join_files(&self, rel: &Path) -> Vec<PathBuf> {
        vec![self.dir(rel).join("cgroup.procs")]
    }

    fn pids(&self, rel: &Path) -> Result<Vec<u32>, OsError> {
        let mut out = Vec::new();
        read_pids(&self.dir(rel).join("cgroup.procs"), &mut out)?;
        Ok(out)
    }

    fn kill_all(&self, rel: &Path, signal: i32) -> Result<(), OsError> {
        let kill_file = self.dir(rel).join("cgroup.kill");
        if signal == libc::SIGKILL && fs::write(&kill_file, "1").is_ok() {
            return Ok(());
        }
        kill_pids(&self.pids(rel)?, signal)
    }

    fn remove(&self, created: &[PathBuf]) -> Result<(), OsError> {
        remove_dirs(created)
    }

    fn stats(&self, rel: &Path) -> Result<CgroupStats, OsError> {
        Ok(CgroupStats::V2(read_v2_stats(&self.dir(rel))?))
    }

    fn host_paths(&self, rel: &Path) -> Vec<PathBuf> {
        vec![self.dir(rel)]
    }

    fn birth_cgroup(&self, rel: &Path) -> Option<PathBuf> {
        Some(self.dir(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_stats_from_files() {
        // File texts in the kernel's v2 formats.
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::write(d.join("cpu.stat"), "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 77\n").unwrap();
        fs::write(d.join("memory.current"), "1310720\n").unwrap();
        fs::write(d.join("memory.max"), "max\n").unwrap();
        fs::write(
            d.join("memory.stat"),
            "anon 45056\nfile 1126400\nkernel 139264\nsock 0\nshmem 0\n",
        )
        .unwrap();
        fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        fs::write(d.join("pids.current"), "3\n").unwrap();
        fs::write(d.join("pids.max"), "100\n").unwrap();
        fs::write(
            d.join("io.stat"),
            "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        )
        .unwrap();
        let s = read_v2_stats(d).unwrap();
        assert_eq!(s.cpu.usage_usec, 2000);
        assert_eq!(s.cpu.throttled_usec, 77);
        assert_eq!(s.memory.usage, 1310720);
        assert_eq!(s.memory.usage_limit, 0);
        assert_eq!(s.memory.stat["anon"], 45056);
        assert_eq!(s.memory.events["oom_kill"], 1);
        assert_eq!(
            s.pids,
            Pids {
                current: 3,
                limit: 100
            }
        );
        assert_eq!(s.io[0].rbytes, 4096);
    }

    #[test]
    fn v2_stats_without_controllers() {
        let t = tempfile::tempdir().unwrap();
        fs::write(
            t.path().join("cpu.stat"),
            "usage_usec 9\nuser_usec 4\nsystem_usec 5\n",
        )
        .unwrap();
        let s = read_v2_stats(t.path()).unwrap();
        assert_eq!(s.cpu.usage_usec, 9);
        assert_eq!(s.memory, V2Memory::default());
    }
}
