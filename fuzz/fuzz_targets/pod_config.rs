//! CRI's PodSandboxConfig as containerd passes it in CreateSandbox's
//! options: any bytes decode to a config or a clear error, and a config
//! that decodes survives an encode/decode round trip unchanged.
#![no_main]
use husk_shim::cri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = cri::decode_pod_config(data) {
        let again = cri::decode_pod_config(&cri::encode::pod_config(&p));
        assert_eq!(again.ok().as_ref(), Some(&p));
    }
});
