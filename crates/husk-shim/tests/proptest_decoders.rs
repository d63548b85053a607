//! Property tests for what the shim decodes from the outside: CRI pod
//! configs, stdin options and command lines. They must never panic, and
//! what husk encodes must decode back unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use husk_sandbox::{Dns, NsMode, PodConfig};
use husk_shim::{bootstrap, cri};
use proptest::prelude::*;

fn mode() -> impl Strategy<Value = NsMode> {
    prop_oneof![Just(NsMode::Pod), Just(NsMode::Node)]
}

prop_compose! {
    fn pod()(
        name in ".{0,20}", namespace in ".{0,20}", uid in ".{0,20}", hostname in ".{0,40}",
        dns in proptest::option::of((proptest::collection::vec(".{0,15}", 0..3),
                                     proptest::collection::vec(".{0,15}", 0..3),
                                     proptest::collection::vec(".{0,15}", 0..3))),
        cgroup_parent in ".{0,40}", network in mode(), pid in mode(), ipc in mode(),
        sysctls in proptest::collection::btree_map(".{1,10}", ".{0,10}", 0..4),
        labels in proptest::collection::btree_map(".{1,10}", ".{0,10}", 0..4),
    ) -> PodConfig {
        PodConfig {
            name, namespace, uid, hostname,
            dns: dns.map(|(servers, searches, options)| Dns { servers, searches, options }),
            cgroup_parent, network, pid, ipc,
            sysctls: sysctls.into_iter().collect::<BTreeMap<_, _>>(),
            labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
        }
    }
}

proptest! {
    #[test]
    fn pod_config_round_trips(p in pod()) {
        prop_assert_eq!(cri::decode_pod_config(&cri::encode::pod_config(&p)).unwrap(), p);
    }

    #[test]
    fn pod_config_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = cri::decode_pod_config(&bytes);
    }

    #[test]
    fn truncated_pod_configs_never_panic(p in pod(), cut in any::<prop::sample::Index>()) {
        let b = cri::encode::pod_config(&p);
        let _ = cri::decode_pod_config(&b[..cut.index(b.len() + 1)]);
    }

    #[test]
    fn start_options_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), id in "[a-z]{1,8}") {
        let _ = bootstrap::decode_options(&bytes, &id);
    }

    #[test]
    fn argv_parser_never_panics(args in proptest::collection::vec("-?-?[a-z=-]{0,12}", 0..8)) {
        let _ = bootstrap::parse_args(args);
    }
}
