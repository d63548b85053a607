//! Ids, cgroup parents and paths from requests and specs: validation never
//! panics, and what it accepts stays inside where it must.
#![no_main]
use std::path::{Component, Path};
use std::sync::OnceLock;

use husk_sandbox::{id, os::cgroup};
use husk_task::runtime::native::rootfs;
use husk_task::spec;
use libfuzzer_sys::fuzz_target;

fn root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        let _ = std::fs::create_dir_all(d.path().join("etc/sub"));
        let _ = std::os::unix::fs::symlink("/etc/passwd", d.path().join("abs"));
        let _ = std::os::unix::fs::symlink("../../../..", d.path().join("etc/up"));
        d
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('\n').unwrap_or((text, "x"));
    if id::validate(a).is_ok() {
        assert!(!a.contains('/') && a != "." && a != "..", "{a:?}");
    }
    if let Ok(p) = cgroup::pod_path(a, b) {
        assert!(p
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
    }
    if let Ok(p) = spec::cgroup_rel(a) {
        assert!(!p.components().any(|c| c == Component::ParentDir), "{p:?}");
    }
    let _ = spec::proc_cgroup(text, a.len() % 2 == 0);
    if let Ok(p) = rootfs::resolve_in(root(), Path::new(a)) {
        assert!(p.starts_with(root()), "{a:?} resolved to {p:?}");
    }
});
