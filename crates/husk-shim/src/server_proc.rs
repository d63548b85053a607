//! Finding a running shim server by its argv. Only the shim knows the argv
//! it runs with (`-namespace NS -id ID serve`), so only it looks for it.

use husk_sandbox::inspect::{argv, processes_with_arg};

/// Whether `pid` is a husk shim server: argv has `-id <id>` and `serve`
/// (and `-namespace <ns>` when `ns` is given).
pub fn is_shim_server(pid: u32, ns: Option<&str>, id: &str) -> bool {
    let a = argv(pid);
    let flag = |name: &[u8], value: &str| {
        a.windows(2)
            .any(|w| w[0] == name && w[1] == value.as_bytes())
    };
    flag(b"-id", id)
        && ns.is_none_or(|ns| flag(b"-namespace", ns))
        && a.iter().any(|x| x == b"serve")
}

/// The husk shim server serving sandbox `id`, in any namespace.
pub fn shim_server(id: &str) -> Option<u32> {
    processes_with_arg(id)
        .into_iter()
        .find(|p| is_shim_server(*p, None, id))
}

/// The husk shim server serving sandbox `id` in containerd namespace `ns`.
pub fn shim_server_in(ns: &str, id: &str) -> Option<u32> {
    processes_with_arg(id)
        .into_iter()
        .find(|p| is_shim_server(*p, Some(ns), id))
}
