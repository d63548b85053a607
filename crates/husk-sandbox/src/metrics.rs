//! Typed cgroup statistics, as the kernel reports them. Serialised to
//! containerd's protobuf types in one place, by the shim.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum CgroupStats {
    V1(V1Stats),
    V2(V2Stats),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct V1Stats {
    pub cpu: V1Cpu,
    pub memory: V1Memory,
    pub pids: Pids,
    pub blkio: V1Blkio,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct V1Cpu {
    /// Nanoseconds.
    pub usage_total: u64,
    pub usage_user: u64,
    pub usage_kernel: u64,
    pub per_cpu: Vec<u64>,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct V1MemoryEntry {
    pub usage: u64,
    pub max: u64,
    pub limit: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct V1Memory {
    pub usage: V1MemoryEntry,
    pub swap: V1MemoryEntry,
    pub kernel: V1MemoryEntry,
    /// memory.stat, key by key.
    pub stat: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pids {
    pub current: u64,
    /// 0 means no limit ("max").
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BlkioEntry {
    pub op: String,
    pub major: u64,
    pub minor: u64,
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct V1Blkio {
    pub io_service_bytes: Vec<BlkioEntry>,
    pub io_serviced: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct V2Stats {
    pub cpu: V2Cpu,
    pub memory: V2Memory,
    pub pids: Pids,
    pub io: Vec<IoEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct V2Cpu {
    /// Microseconds, as cpu.stat gives them.
    pub usage_usec: u64,
    pub user_usec: u64,
    pub system_usec: u64,
    pub nr_periods: u64,
    pub nr_throttled: u64,
    pub throttled_usec: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct V2Memory {
    pub usage: u64,
    /// 0 means no limit ("max").
    pub usage_limit: u64,
    pub swap_usage: u64,
    pub swap_limit: u64,
    pub stat: BTreeMap<String, u64>,
    pub events: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IoEntry {
    pub major: u64,
    pub minor: u64,
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
}
