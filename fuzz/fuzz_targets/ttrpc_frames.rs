//! Bytes off the shim's socket through the service gate, split at every
//! read boundary the input picks: the gate never panics, passes the same
//! bytes to the server however the input is split, and answers only
//! whole frames.
#![no_main]
use std::collections::HashSet;
use std::sync::Arc;

use husk_shim::gate::Sifter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((cut, input)) = data.split_first() else {
        return;
    };
    let known: Arc<HashSet<String>> = Arc::new(
        ["containerd.task.v3.Task".to_string()]
            .into_iter()
            .collect(),
    );
    let run = |step: usize| {
        let mut s = Sifter::new(known.clone());
        let (mut to, mut re) = (Vec::new(), Vec::new());
        for chunk in input.chunks(step.max(1)) {
            s.feed(chunk, &mut to, &mut re);
        }
        s.finish(&mut to);
        (to, re)
    };
    let whole = run(input.len());
    let split = run(usize::from(*cut));
    assert_eq!(whole, split);
    let mut re = &whole.1[..];
    while !re.is_empty() {
        let len = u32::from_be_bytes([re[0], re[1], re[2], re[3]]) as usize;
        assert_eq!(re[8], 2, "a response frame");
        re = &re[10 + len..];
    }
});
