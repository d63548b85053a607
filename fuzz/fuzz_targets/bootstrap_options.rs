//! `start`'s stdin: a raw Any (containerd 2.0–2.2) or BootstrapParams
//! (2.3+), or garbage. First byte picks the id the shim was started for.
#![no_main]
use husk_shim::bootstrap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (id, body) = match data.split_first() {
        Some((b, rest)) if b & 1 == 0 => ("sb1", rest),
        Some((_, rest)) => ("", rest),
        None => ("sb1", data),
    };
    let _ = bootstrap::decode_options(body, id);
});
