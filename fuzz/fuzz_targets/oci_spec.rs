//! The OCI spec (config.json) and exec process.json the shim reads: the
//! engine's parse, the pod-mount edit, exec and update checks, and what
//! husk's runtime derives (cgroup writes, the seccomp program, which the
//! in-process interpreter then runs).
#![no_main]
use husk_task::runtime::native::{process, resources, seccomp};
use husk_task::spec;
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::{LinuxResources, Process, Spec};

fuzz_target!(|data: &[u8]| {
    let _ = spec::parse(data);
    let pod_files = [
        "/run/b/hostname".into(),
        "/run/b/hosts".into(),
        "/run/b/shm".into(),
    ];
    if let Ok((Some(text), _)) = spec::with_pod_mounts(data, &pod_files) {
        // The edited spec is still JSON, and editing it again adds nothing.
        let again = spec::with_pod_mounts(&text, &pod_files).expect("edited spec re-reads");
        assert!(again.0.is_none());
    }
    if let Ok(p) = spec::check_process(data) {
        let _ = process::validate(&p);
        let _ = process::env(&p);
    }
    let _ = spec::check_resources(data);
    if let Ok(r) = serde_json::from_slice::<LinuxResources>(data) {
        for v in [
            husk_sandbox::os::CgroupVersion::V1,
            husk_sandbox::os::CgroupVersion::V2,
        ] {
            let _ = resources::writes(v, &r);
        }
    }
    if let Ok(p) = serde_json::from_slice::<Process>(data) {
        let _ = process::validate(&p);
    }
    if let Ok(s) = serde_json::from_slice::<Spec>(data) {
        if let Some(profile) = s.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            if let Ok(prog) = seccomp::compile(profile) {
                for nr in [0u32, 1, 59, 231, 435, 1 << 30] {
                    let _ = seccomp::run(&prog, 0xc000_003e, nr, [0, 1, 2, 3, 4, 5]);
                }
            }
        }
    }
});
