//! Runtime options: husk's TOML config file, and the options Any of a
//! handler (runtimeoptions.v1.Options wrapping TOML, or runc's Options).
#![no_main]
use husk_shim::runtime_options;
use husk_task::RuntimeOptions;
use libfuzzer_sys::fuzz_target;

const URLS: [&str; 4] = [
    "runtimeoptions.v1.Options",
    "type.googleapis.com/runtimeoptions.v1.Options",
    "containerd.runc.v1.Options",
    "",
];

fuzz_target!(|data: &[u8]| {
    let Some((sel, body)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(o) = RuntimeOptions::from_toml(text) {
            let _ = o.binary();
        }
    }
    let url = URLS[usize::from(*sel) % URLS.len()];
    if let Ok(o) = runtime_options::decode(url, body) {
        let _ = o.or(&RuntimeOptions::default()).binary();
    }
});
