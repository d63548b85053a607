//! A sandbox's state.json at restart or `shim delete`: decoding never
//! panics, and a record that is accepted names only what the sandbox owns.
#![no_main]
use husk_sandbox::state;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = state::decode(data, "sb1") {
        assert_eq!(rec.id, "sb1");
        for p in rec.mounts.iter().chain(&rec.files) {
            assert!(p.starts_with(&rec.bundle) && *p != rec.bundle);
        }
    }
});
