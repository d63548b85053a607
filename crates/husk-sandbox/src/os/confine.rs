//! What the pod holder may do once it runs: nothing a pause process does
//! not need. Before it execs its program the holder clears every
//! capability set (bounding and ambient included), sets no_new_privs, and,
//! when the program is `husk-pause`, installs a seccomp filter that allows
//! only the syscalls that program makes. Holding namespaces needs no
//! privilege: they stay alive while the process is in them.
//!
//! The filter is built here, in the parent; the cloned child only passes
//! it to prctl(2).

/// The one syscall the holder makes before its program runs, then the
/// syscalls of `husk-pause`: block signals, wait for one, reap children,
/// exit. `rt_sigreturn` and `restart_syscall` are the kernel's own.
pub fn pause_syscalls() -> Vec<u32> {
    [
        libc::SYS_execve,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigtimedwait,
        libc::SYS_wait4,
        libc::SYS_exit_group,
        libc::SYS_exit,
        libc::SYS_rt_sigreturn,
        libc::SYS_restart_syscall,
    ]
    .iter()
    .map(|n| *n as u32)
    .collect()
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

const LD_W_ABS: u16 = 0x20;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A classic BPF program: another architecture is killed, the syscalls
/// in `allow` pass, every other fails with EPERM.
pub fn allow_only(allow: &[u32]) -> Vec<libc::sock_filter> {
    let n = allow.len();
    let mut p = vec![
        insn(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        insn(JMP_JEQ_K, 1, 0, AUDIT_ARCH),
        insn(RET_K, 0, 0, RET_KILL_PROCESS),
        insn(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
    ];
    // x32 calls on x86_64 carry bit 30: never ours.
    if cfg!(target_arch = "x86_64") {
        p.push(insn(JMP_JGE_K, n as u8, 0, 0x4000_0000));
    }
    for (i, nr) in allow.iter().enumerate() {
        // Past the remaining comparisons and the deny, onto the allow.
        p.push(insn(JMP_JEQ_K, (n - i) as u8, 0, *nr));
    }
    p.push(insn(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32));
    p.push(insn(RET_K, 0, 0, RET_ALLOW));
    p
}

/// Runs `prog` over one syscall as the kernel would (for tests).
#[cfg(test)]
fn run(prog: &[libc::sock_filter], arch: u32, nr: u32) -> u32 {
    let mut pc = 0;
    let mut a = 0u32;
    loop {
        let i = &prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => a = if i.k == 4 { arch } else { nr },
            RET_K => return i.k,
            JMP_JEQ_K | JMP_JGE_K => {
                let t = if i.code == JMP_JEQ_K {
                    a == i.k
                } else {
                    a >= i.k
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

    #[test]
    fn only_the_pause_syscalls_pass() {
        let allow = pause_syscalls();
        let prog = allow_only(&allow);
        for nr in &allow {
            assert_eq!(run(&prog, AUDIT_ARCH, *nr), RET_ALLOW, "nr {nr}");
        }
        for nr in [
            libc::SYS_openat,
            libc::SYS_mount,
            libc::SYS_setns,
            libc::SYS_socket,
            libc::SYS_kill,
        ] {
            assert_eq!(
                run(&prog, AUDIT_ARCH, nr as u32),
                RET_ERRNO | libc::EPERM as u32,
                "nr {nr}"
            );
        }
        assert_eq!(run(&prog, 0x4000_0003, allow[0]), RET_KILL_PROCESS);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                run(&prog, AUDIT_ARCH, allow[0] | 0x4000_0000),
                RET_ERRNO | libc::EPERM as u32
            );
        }
    }
}
