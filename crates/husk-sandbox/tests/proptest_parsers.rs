//! Property tests for the engine's parsers and validators.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use husk_sandbox::id;
use husk_sandbox::os::cgroup::{
    self, parse_blkio, parse_flat_keyed, parse_io_stat, parse_limit, parse_list,
};
use husk_sandbox::os::mount::parse_options;
use proptest::prelude::*;

proptest! {
    #[test]
    fn valid_ids_are_single_safe_path_components(s in "\\PC{0,90}") {
        if id::validate(&s).is_ok() {
            prop_assert!(!s.is_empty() && s.len() <= id::MAX_ID_LEN);
            prop_assert!(!s.contains('/') && !s.contains("..") && !s.contains('\0'));
            prop_assert!(s != "." && !s.starts_with('.') && !s.starts_with('-'));
        }
    }

    #[test]
    fn cgroup_paths_stay_below_the_root(parent in "\\PC{0,60}", sid in "[a-z0-9]{1,10}") {
        if let Ok(p) = cgroup::pod_path(&parent, &sid) {
            prop_assert!(p.is_absolute());
            prop_assert!(p.components().all(|c| !matches!(c, std::path::Component::ParentDir | std::path::Component::CurDir)));
            prop_assert!(p.ends_with(&sid));
        }
    }

    #[test]
    fn stat_parsers_never_panic(s in "\\PC{0,300}") {
        let _ = parse_limit(&s);
        let _ = parse_flat_keyed(&s);
        let _ = parse_list(&s);
        let _ = parse_blkio(&s);
        let _ = parse_io_stat(&s);
    }

    #[test]
    fn mount_options_keep_unknown_ones_as_data(opts in proptest::collection::vec("[a-z]{1,8}=[a-z0-9]{1,8}", 0..5)) {
        let (_, _, data) = parse_options(&opts);
        prop_assert_eq!(data, opts.join(","));
    }
}
