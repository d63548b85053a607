//! An OCI seccomp profile compiled to a classic BPF program, and installed.
//!
//! The program is a linear chain: check the architecture, load the syscall
//! number, then one block per (syscall, rule): compare the number, then
//! each argument condition on both 32-bit halves, then return the rule's
//! action. Anything that matches no rule gets the default action. Syscall
//! names this kernel's table does not know are skipped, as libseccomp does.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

// BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const ALU_AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

// struct seccomp_data offsets.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// A BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeccompError {
    #[error("seccomp action {0:?} is not supported")]
    Action(LinuxSeccompAction),
    #[error("seccomp argument index {0} is out of range")]
    ArgIndex(usize),
    #[error("seccomp program too long ({0} instructions)")]
    TooLong(usize),
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<u32, SeccompError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActErrno => {
            RET_ERRNO | (errno.unwrap_or(libc::EPERM as u32) & 0xffff)
        }
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | (errno.unwrap_or(0) & 0xffff),
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        other => return Err(SeccompError::Action(other)),
    })
}

/// One argument condition, already split into 32-bit halves.
struct Cond {
    index: u32,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}
fn lo(v: u64) -> u32 {
    v as u32
}

/// Appends a condition. Jumps to `FAIL` are patched once the block's end
/// is known (`u8::MAX` marks them here).
fn cond(out: &mut Vec<Insn>, fails: &mut Vec<usize>, c: &Cond) {
    let off_lo = OFF_ARGS + c.index * 8;
    let off_hi = off_lo + 4;
    let mark = |out: &mut Vec<Insn>, fails: &mut Vec<usize>, i: Insn, jt_fail: bool| {
        fails.push(out.len() | if jt_fail { 1 << 31 } else { 0 });
        out.push(i);
    };
    use LinuxSeccompOperator as Op;
    match c.op {
        Op::ScmpCmpEq | Op::ScmpCmpMaskedEq => {
            let (mask, want) = if c.op == Op::ScmpCmpMaskedEq {
                (c.value, c.value_two)
            } else {
                (u64::MAX, c.value)
            };
            out.push(stmt(LD_W_ABS, off_hi));
            if c.op == Op::ScmpCmpMaskedEq {
                out.push(stmt(ALU_AND_K, hi(mask)));
            }
            mark(out, fails, jump(JMP_JEQ_K, hi(want), 0, 0), false);
            out.push(stmt(LD_W_ABS, off_lo));
            if c.op == Op::ScmpCmpMaskedEq {
                out.push(stmt(ALU_AND_K, lo(mask)));
            }
            mark(out, fails, jump(JMP_JEQ_K, lo(want), 0, 0), false);
        }
        Op::ScmpCmpNe => {
            // True when either half differs.
            out.push(stmt(LD_W_ABS, off_hi));
            out.push(jump(JMP_JEQ_K, hi(c.value), 0, 2));
            out.push(stmt(LD_W_ABS, off_lo));
            mark(out, fails, jump(JMP_JEQ_K, lo(c.value), 0, 0), true);
        }
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            // hi > v.hi passes; hi == v.hi needs lo > (or >=) v.lo.
            let lo_op = if c.op == Op::ScmpCmpGt {
                JMP_JGT_K
            } else {
                JMP_JGE_K
            };
            out.push(stmt(LD_W_ABS, off_hi));
            out.push(jump(JMP_JGT_K, hi(c.value), 3, 0));
            mark(out, fails, jump(JMP_JEQ_K, hi(c.value), 0, 0), false);
            out.push(stmt(LD_W_ABS, off_lo));
            mark(out, fails, jump(lo_op, lo(c.value), 0, 0), false);
        }
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            // hi < v.hi passes; hi == v.hi needs lo < (or <=) v.lo.
            let lo_op = if c.op == Op::ScmpCmpLt {
                JMP_JGE_K
            } else {
                JMP_JGT_K
            };
            out.push(stmt(LD_W_ABS, off_hi));
            out.push(jump(JMP_JGE_K, hi(c.value), 0, 3));
            mark(out, fails, jump(JMP_JEQ_K, hi(c.value), 0, 0), false);
            out.push(stmt(LD_W_ABS, off_lo));
            mark(out, fails, jump(lo_op, lo(c.value), 0, 0), true);
        }
    }
}

/// The native architecture's audit value.
fn native_arch() -> u32 {
    if cfg!(target_arch = "aarch64") {
        AUDIT_ARCH_AARCH64
    } else {
        AUDIT_ARCH_X86_64
    }
}

/// Compiles a profile for the native architecture. Calls made through
/// another ABI (x32, i386) get the default action.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<Insn>, SeccompError> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut out = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JMP_JEQ_K, native_arch(), 1, 0),
        stmt(RET_K, default),
        stmt(LD_W_ABS, OFF_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        out.push(jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1));
        out.push(stmt(RET_K, default));
    }
    for rule in profile.syscalls().iter().flatten() {
        let ret = action(rule.action(), rule.errno_ret())?;
        if ret == default {
            continue;
        }
        let conds: Vec<Cond> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                if a.index() > 5 {
                    return Err(SeccompError::ArgIndex(a.index()));
                }
                Ok(Cond {
                    index: a.index() as u32,
                    op: a.op(),
                    value: a.value(),
                    value_two: a.value_two().unwrap_or(0),
                })
            })
            .collect::<Result<_, _>>()?;
        for name in rule.names() {
            let Ok(nr) = name.parse::<syscalls::Sysno>() else {
                continue;
            };
            let nr = nr.id() as u32;
            if conds.is_empty() {
                out.push(jump(JMP_JEQ_K, nr, 0, 1));
                out.push(stmt(RET_K, ret));
                continue;
            }
            // jeq nr → block; the block ends with `ret` and a reload of
            // the number, where every failed condition lands.
            let head = out.len();
            out.push(jump(JMP_JEQ_K, nr, 0, 0));
            let mut fails = Vec::new();
            for c in &conds {
                cond(&mut out, &mut fails, c);
            }
            out.push(stmt(RET_K, ret));
            let reload = out.len();
            out.push(stmt(LD_W_ABS, OFF_NR));
            let skip = reload + 1 - (head + 1);
            out[head].jf = u8::try_from(skip).map_err(|_| SeccompError::TooLong(skip))?;
            for f in fails {
                let (at, jt) = (f & !(1 << 31), f & (1 << 31) != 0);
                let off =
                    u8::try_from(reload - (at + 1)).map_err(|_| SeccompError::TooLong(reload))?;
                if jt {
                    out[at].jt = off;
                } else {
                    out[at].jf = off;
                }
            }
        }
    }
    out.push(stmt(RET_K, default));
    if out.len() > 4096 {
        return Err(SeccompError::TooLong(out.len()));
    }
    Ok(out)
}

/// Installs a compiled program on the calling thread. Needs no_new_privs
/// or CAP_SYS_ADMIN.
pub fn install(prog: &[Insn]) -> std::io::Result<()> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const Insn,
    }
    // The kernel's BPF_MAXINSNS.
    if prog.len() > 4096 {
        return Err(std::io::Error::other(format!(
            "seccomp program of {} instructions exceeds the kernel's 4096",
            prog.len()
        )));
    }
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel
    // copies the program and keeps no pointer to it.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const SockFprog,
            0,
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs a compiled program over one call, as the kernel would (for tests
/// and the fuzz targets).
pub fn run(prog: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            OFF_NR => nr,
            OFF_ARCH => arch,
            o => {
                let i = ((o - OFF_ARGS) / 8) as usize;
                if (o - OFF_ARGS) & 7 == 0 {
                    args[i] as u32
                } else {
                    (args[i] >> 32) as u32
                }
            }
        }
    };
    let (mut pc, mut a) = (0usize, 0u32);
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => a = word(i.k),
            ALU_AND_K => a &= i.k,
            RET_K => return i.k,
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                let t = match i.code {
                    JMP_JEQ_K => a == i.k,
                    JMP_JGT_K => a > i.k,
                    _ => a >= i.k,
                };
                pc += usize::from(if t { i.jt } else { i.jf });
            }
            c => panic!("opcode {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    fn nr(name: &str) -> u32 {
        name.parse::<syscalls::Sysno>().unwrap().id() as u32
    }

    #[test]
    fn default_errno_with_allowed_names() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["read","write","no_such_call"],"action":"SCMP_ACT_ALLOW"},
                {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
        );
        let prog = compile(&p).unwrap();
        let a = native_arch();
        assert_eq!(run(&prog, a, nr("read"), [0; 6]), RET_ALLOW);
        assert_eq!(run(&prog, a, nr("write"), [0; 6]), RET_ALLOW);
        assert_eq!(run(&prog, a, nr("mkdir"), [0; 6]), RET_ERRNO | 13);
        assert_eq!(run(&prog, a, nr("open"), [0; 6]), RET_ERRNO | 1);
        // Another ABI gets the default.
        assert_eq!(run(&prog, 0x4000_0003, nr("read"), [0; 6]), RET_ERRNO | 1);
        assert_eq!(
            run(&prog, a, nr("read") | X32_SYSCALL_BIT, [0; 6]),
            RET_ERRNO | 1
        );
    }

    #[test]
    fn argument_operators_on_64_bit_values() {
        let big = 0x1_0000_0005u64;
        type Case<'a> = (&'a str, u64, u64, &'a [(u64, bool)]);
        let cases: &[Case] = &[
            (
                "SCMP_CMP_EQ",
                big,
                0,
                &[(big, true), (5, false), (big + 1, false)],
            ),
            (
                "SCMP_CMP_NE",
                big,
                0,
                &[(big, false), (5, true), (0x2_0000_0005, true)],
            ),
            (
                "SCMP_CMP_GT",
                big,
                0,
                &[
                    (big, false),
                    (big + 1, true),
                    (0x2_0000_0000, true),
                    (6, false),
                ],
            ),
            (
                "SCMP_CMP_GE",
                big,
                0,
                &[(big, true), (big - 1, false), (u64::MAX, true)],
            ),
            (
                "SCMP_CMP_LT",
                big,
                0,
                &[
                    (big, false),
                    (big - 1, true),
                    (7, true),
                    (0x2_0000_0000, false),
                ],
            ),
            (
                "SCMP_CMP_LE",
                big,
                0,
                &[(big, true), (big + 1, false), (0, true)],
            ),
            (
                "SCMP_CMP_MASKED_EQ",
                0x7e02_0000,
                0x0002_0000,
                &[
                    (0x0002_0000, true),
                    (0x0002_0011, true),
                    (0x1002_0000, false),
                ],
            ),
        ];
        for (op, value, two, checks) in cases {
            let p = profile(&format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {{"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":1,
                  "args":[{{"index":1,"value":{value},"valueTwo":{two},"op":"{op}"}}]}}]}}"#
            ));
            let prog = compile(&p).unwrap();
            for (arg, hit) in *checks {
                let got = run(
                    &prog,
                    native_arch(),
                    nr("personality"),
                    [0, *arg, 0, 0, 0, 0],
                );
                let want = if *hit { RET_ERRNO | 1 } else { RET_ALLOW };
                assert_eq!(got, want, "{op} {value:#x} vs {arg:#x}");
                // Other calls are never caught by the condition.
                assert_eq!(
                    run(&prog, native_arch(), nr("read"), [0, *arg, 0, 0, 0, 0]),
                    RET_ALLOW
                );
            }
        }
    }

    #[test]
    fn several_conditions_are_all_required() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
              {"names":["socket"],"action":"SCMP_ACT_ALLOW",
               "args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":1,"value":2,"op":"SCMP_CMP_EQ"}]},
              {"names":["socket"],"action":"SCMP_ACT_ALLOW",
               "args":[{"index":0,"value":10,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        let prog = compile(&p).unwrap();
        let s = nr("socket");
        let a = native_arch();
        assert_eq!(run(&prog, a, s, [1, 2, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&prog, a, s, [1, 3, 0, 0, 0, 0]), RET_ERRNO | 1);
        assert_eq!(run(&prog, a, s, [10, 3, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&prog, a, s, [11, 2, 0, 0, 0, 0]), RET_ERRNO | 1);
    }

    #[test]
    fn notify_is_refused() {
        let p = profile(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#);
        assert!(matches!(compile(&p), Err(SeccompError::Action(_))));
    }

    /// The kernel runs what `compile` makes: a child with the filter
    /// installed gets the profile's errno from mkdir, and nothing else
    /// changes.
    #[test]
    fn the_kernel_enforces_a_compiled_profile() {
        use std::os::unix::process::CommandExt;
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_AARCH64"],
                "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
        );
        let prog = compile(&p).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("made");
        let mut cmd = std::process::Command::new("mkdir");
        cmd.arg(&target);
        // SAFETY: prctl calls only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                install(&prog)
            });
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "EACCES (13) from the filter: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!target.exists());
        // Without the filter the same call works.
        assert!(std::process::Command::new("mkdir")
            .arg(&target)
            .status()
            .unwrap()
            .success());
    }
}
