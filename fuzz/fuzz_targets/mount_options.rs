//! Mount options as containerd and specs give them, for the sandbox's
//! rootfs mounts and for containers' mounts.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let opts: Vec<String> = text.split(',').map(str::to_string).collect();
    let _ = husk_sandbox::os::mount::parse_options(&opts);
    let _ = husk_task::runtime::native::rootfs::parse_options(&opts);
});
