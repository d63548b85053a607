//! containerd-shim-husk-v1: the composition root. Dispatches on argv to
//! the pause program (pod holder), `start`, `delete` or the server.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use husk_sandbox::os::pause::{pause_main, PAUSE_ARGV0};
use husk_shim::bootstrap::{self, BootstrapError};
use husk_shim::serve;

fn main() -> ExitCode {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    if argv0 == PAUSE_ARGV0 {
        pause_main();
    }
    if argv0 == husk_task::runtime::native::child::INIT_ARGV0 {
        husk_task::runtime::native::child::main();
    }
    match run(args.collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containerd-shim-husk-v1: {}", husk_shim::error::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), BootstrapError> {
    let flags = bootstrap::parse_args(args)?;
    if flags.version {
        println!("containerd-shim-husk-v1 {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    if let Some(b) = &flags.bundle {
        std::env::set_current_dir(b).map_err(|e| BootstrapError::Io {
            op: "chdir",
            path: b.clone(),
            source: e,
        })?;
    }
    let io = |op| {
        move |e| BootstrapError::Io {
            op,
            path: "stdout".into(),
            source: e,
        }
    };
    let stdin = || -> Result<Vec<u8>, BootstrapError> {
        let mut buf = Vec::new();
        let input = std::io::stdin();
        if !input.is_terminal() {
            input
                .lock()
                .read_to_end(&mut buf)
                .map_err(io("read stdin"))?;
        }
        Ok(buf)
    };
    if flags.info {
        let resp = bootstrap::info(&stdin()?)?;
        return bootstrap::emit(&resp).map_err(io("write"));
    }
    match flags.action.as_deref() {
        Some("start") => {
            let stdin = stdin()?;
            let reply = bootstrap::start(&flags, &stdin)?;
            bootstrap::emit(reply.as_bytes()).map_err(io("write"))
        }
        Some("delete") => {
            let resp = bootstrap::delete(&flags)?;
            bootstrap::emit(&resp).map_err(io("write"))
        }
        Some("serve") => serve::serve(&flags),
        Some(other) => Err(BootstrapError::Usage(format!(
            "unknown action {other:?}; want start or delete"
        ))),
        None => Err(BootstrapError::Usage(
            "no action; want start or delete".into(),
        )),
    }
}
