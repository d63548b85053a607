//! Engine types to containerd's protobuf types, in one place.

use std::time::{SystemTime, UNIX_EPOCH};

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::types::platform::Platform as PbPlatform;
use husk_sandbox::metrics::{BlkioEntry, CgroupStats, V1Stats, V2Stats};
use husk_sandbox::Platform;

pub const V1_METRICS_URL: &str = "io.containerd.cgroups.v1.Metrics";
pub const V2_METRICS_URL: &str = "io.containerd.cgroups.v2.Metrics";

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

pub fn from_timestamp(ts: &Timestamp) -> SystemTime {
    let secs = u64::try_from(ts.seconds).unwrap_or(0);
    let nanos = u32::try_from(ts.nanos).unwrap_or(0);
    UNIX_EPOCH + std::time::Duration::new(secs, nanos)
}

pub fn platform(p: &Platform) -> PbPlatform {
    let mut out = PbPlatform::new();
    out.os = p.os.clone();
    out.architecture = p.architecture.clone();
    out.variant = p.variant.clone();
    out
}

/// The `data` Any of a containerd Metric.
pub fn metrics_any(stats: &CgroupStats) -> Result<Any, protobuf::Error> {
    let (url, value) = match stats {
        CgroupStats::V1(s) => (V1_METRICS_URL, v1_metrics(s).write_to_bytes()?),
        CgroupStats::V2(s) => (V2_METRICS_URL, v2_metrics(s).write_to_bytes()?),
    };
    let mut any = Any::new();
    any.type_url = url.to_string();
    any.value = value;
    Ok(any)
}

fn blkio(entries: &[BlkioEntry]) -> Vec<v1::BlkIOEntry> {
    entries
        .iter()
        .map(|e| {
            let mut o = v1::BlkIOEntry::new();
            o.op = e.op.clone();
            o.major = e.major;
            o.minor = e.minor;
            o.value = e.value;
            o
        })
        .collect()
}

fn mem_entry(e: &husk_sandbox::metrics::V1MemoryEntry) -> v1::MemoryEntry {
    let mut o = v1::MemoryEntry::new();
    o.usage = e.usage;
    o.max = e.max;
    o.limit = e.limit;
    o.failcnt = e.failcnt;
    o
}

pub fn v1_metrics(s: &V1Stats) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    let mut pids = v1::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = MessageField::some(pids);

    let mut usage = v1::CPUUsage::new();
    usage.total = s.cpu.usage_total;
    usage.user = s.cpu.usage_user;
    usage.kernel = s.cpu.usage_kernel;
    usage.per_cpu = s.cpu.per_cpu.clone();
    let mut thr = v1::Throttle::new();
    thr.periods = s.cpu.periods;
    thr.throttled_periods = s.cpu.throttled_periods;
    thr.throttled_time = s.cpu.throttled_time;
    let mut cpu = v1::CPUStat::new();
    cpu.usage = MessageField::some(usage);
    cpu.throttling = MessageField::some(thr);
    m.cpu = MessageField::some(cpu);

    let st = |k: &str| s.memory.stat.get(k).copied().unwrap_or(0);
    let mut mem = v1::MemoryStat::new();
    mem.cache = st("cache");
    mem.rss = st("rss");
    mem.rss_huge = st("rss_huge");
    mem.mapped_file = st("mapped_file");
    mem.dirty = st("dirty");
    mem.writeback = st("writeback");
    mem.pg_pg_in = st("pgpgin");
    mem.pg_pg_out = st("pgpgout");
    mem.pg_fault = st("pgfault");
    mem.pg_maj_fault = st("pgmajfault");
    mem.inactive_anon = st("inactive_anon");
    mem.active_anon = st("active_anon");
    mem.inactive_file = st("inactive_file");
    mem.active_file = st("active_file");
    mem.unevictable = st("unevictable");
    mem.hierarchical_memory_limit = st("hierarchical_memory_limit");
    mem.hierarchical_swap_limit = st("hierarchical_memsw_limit");
    mem.total_cache = st("total_cache");
    mem.total_rss = st("total_rss");
    mem.total_rss_huge = st("total_rss_huge");
    mem.total_mapped_file = st("total_mapped_file");
    mem.total_dirty = st("total_dirty");
    mem.total_writeback = st("total_writeback");
    mem.total_pg_pg_in = st("total_pgpgin");
    mem.total_pg_pg_out = st("total_pgpgout");
    mem.total_pg_fault = st("total_pgfault");
    mem.total_pg_maj_fault = st("total_pgmajfault");
    mem.total_inactive_anon = st("total_inactive_anon");
    mem.total_active_anon = st("total_active_anon");
    mem.total_inactive_file = st("total_inactive_file");
    mem.total_active_file = st("total_active_file");
    mem.total_unevictable = st("total_unevictable");
    mem.usage = MessageField::some(mem_entry(&s.memory.usage));
    mem.swap = MessageField::some(mem_entry(&s.memory.swap));
    mem.kernel = MessageField::some(mem_entry(&s.memory.kernel));
    m.memory = MessageField::some(mem);

    let mut b = v1::BlkIOStat::new();
    b.io_service_bytes_recursive = blkio(&s.blkio.io_service_bytes);
    b.io_serviced_recursive = blkio(&s.blkio.io_serviced);
    m.blkio = MessageField::some(b);
    m
}

pub fn v2_metrics(s: &V2Stats) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let mut pids = v2::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = MessageField::some(pids);

    let mut cpu = v2::CPUStat::new();
    cpu.usage_usec = s.cpu.usage_usec;
    cpu.user_usec = s.cpu.user_usec;
    cpu.system_usec = s.cpu.system_usec;
    cpu.nr_periods = s.cpu.nr_periods;
    cpu.nr_throttled = s.cpu.nr_throttled;
    cpu.throttled_usec = s.cpu.throttled_usec;
    m.cpu = MessageField::some(cpu);

    let st = |k: &str| s.memory.stat.get(k).copied().unwrap_or(0);
    let mut mem = v2::MemoryStat::new();
    mem.anon = st("anon");
    mem.file = st("file");
    mem.kernel_stack = st("kernel_stack");
    mem.slab = st("slab");
    mem.sock = st("sock");
    mem.shmem = st("shmem");
    mem.file_mapped = st("file_mapped");
    mem.file_dirty = st("file_dirty");
    mem.file_writeback = st("file_writeback");
    mem.anon_thp = st("anon_thp");
    mem.inactive_anon = st("inactive_anon");
    mem.active_anon = st("active_anon");
    mem.inactive_file = st("inactive_file");
    mem.active_file = st("active_file");
    mem.unevictable = st("unevictable");
    mem.slab_reclaimable = st("slab_reclaimable");
    mem.slab_unreclaimable = st("slab_unreclaimable");
    mem.pgfault = st("pgfault");
    mem.pgmajfault = st("pgmajfault");
    mem.workingset_refault = st("workingset_refault");
    mem.workingset_activate = st("workingset_activate");
    mem.workingset_nodereclaim = st("workingset_nodereclaim");
    mem.pgrefill = st("pgrefill");
    mem.pgscan = st("pgscan");
    mem.pgsteal = st("pgsteal");
    mem.pgactivate = st("pgactivate");
    mem.pgdeactivate = st("pgdeactivate");
    mem.pglazyfree = st("pglazyfree");
    mem.pglazyfreed = st("pglazyfreed");
    mem.thp_fault_alloc = st("thp_fault_alloc");
    mem.thp_collapse_alloc = st("thp_collapse_alloc");
    mem.usage = s.memory.usage;
    mem.usage_limit = s.memory.usage_limit;
    mem.swap_usage = s.memory.swap_usage;
    mem.swap_limit = s.memory.swap_limit;
    m.memory = MessageField::some(mem);

    let ev = |k: &str| s.memory.events.get(k).copied().unwrap_or(0);
    let mut events = v2::MemoryEvents::new();
    events.low = ev("low");
    events.high = ev("high");
    events.max = ev("max");
    events.oom = ev("oom");
    events.oom_kill = ev("oom_kill");
    events.oom_group_kill = ev("oom_group_kill");
    m.memory_events = MessageField::some(events);

    let mut io = v2::IOStat::new();
    io.usage =
        s.io.iter()
            .map(|e| {
                let mut o = v2::IOEntry::new();
                o.major = e.major;
                o.minor = e.minor;
                o.rbytes = e.rbytes;
                o.wbytes = e.wbytes;
                o.rios = e.rios;
                o.wios = e.wios;
                o
            })
            .collect();
    m.io = MessageField::some(io);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use husk_sandbox::metrics::{Pids, V2Cpu};

    #[test]
    fn v1_any_round_trips() {
        let mut s = V1Stats::default();
        s.cpu.usage_total = 42;
        s.pids = Pids {
            current: 3,
            limit: 9,
        };
        s.memory.stat.insert("total_rss".into(), 4096);
        let any = metrics_any(&CgroupStats::V1(s)).unwrap();
        assert_eq!(any.type_url, V1_METRICS_URL);
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage.total, 42);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.memory.total_rss, 4096);
    }

    #[test]
    fn v2_any_round_trips() {
        let s = V2Stats {
            cpu: V2Cpu {
                usage_usec: 7,
                ..Default::default()
            },
            ..Default::default()
        };
        let any = metrics_any(&CgroupStats::V2(s)).unwrap();
        assert_eq!(any.type_url, V2_METRICS_URL);
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage_usec, 7);
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + std::time::Duration::new(1700000000, 123);
        assert_eq!(from_timestamp(&timestamp(t)), t);
    }
}
