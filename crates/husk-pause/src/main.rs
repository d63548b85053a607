//! husk-pause: the pod holder's program.
//!
//! It is PID 1 of the pod's PID namespace: it blocks SIGTERM, SIGINT and
//! SIGCHLD, waits for them with rt_sigtimedwait, reaps every child that is
//! re-parented to it, and exits 0 on SIGTERM or SIGINT. Blocked signals
//! are queued even for a namespace's init, so a SIGTERM from the host
//! arrives. No libc and no allocator: a few raw syscalls.

#![no_std]
#![no_main]

use core::panic::PanicInfo;

#[cfg(target_arch = "x86_64")]
mod sys {
    pub const RT_SIGPROCMASK: usize = 14;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const WAIT4: usize = 61;
    pub const EXIT_GROUP: usize = 231;

    /// A raw four-argument syscall.
    ///
    /// # Safety
    /// The number and arguments must form a valid syscall whose pointer
    /// arguments point at live memory of the right size.
    pub unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller upholds the syscall's contract; the kernel
        // clobbers only rcx and r11, which are declared.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d,
                lateout("rcx") _, lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }
}

#[cfg(target_arch = "aarch64")]
mod sys {
    pub const RT_SIGPROCMASK: usize = 135;
    pub const RT_SIGTIMEDWAIT: usize = 137;
    pub const WAIT4: usize = 260;
    pub const EXIT_GROUP: usize = 94;

    /// A raw four-argument syscall.
    ///
    /// # Safety
    /// The number and arguments must form a valid syscall whose pointer
    /// arguments point at live memory of the right size.
    pub unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller upholds the syscall's contract; svc clobbers
        // only x0, which carries the result.
        unsafe {
            core::arch::asm!(
                "svc 0",
                in("x8") n,
                inlateout("x0") a as isize => ret,
                in("x1") b, in("x2") c, in("x3") d,
                options(nostack),
            );
        }
        ret
    }
}

use sys::*;

const SIGINT: usize = 2;
const SIGTERM: usize = 15;
const SIGCHLD: usize = 17;
const SIG_BLOCK: usize = 0;
const WNOHANG: usize = 1;
const SIGSET_BYTES: usize = 8;

fn exit(code: usize) -> ! {
    // SAFETY: exit_group takes a status and does not return.
    unsafe {
        syscall4(EXIT_GROUP, code, 0, 0, 0);
    }
    loop {}
}

fn reap_children() {
    loop {
        // SAFETY: wait4(-1, NULL, WNOHANG, NULL) takes no live pointers.
        let r = unsafe { syscall4(WAIT4, usize::MAX, 0, WNOHANG, 0) };
        if r <= 0 {
            return;
        }
    }
}

extern "C" fn pause_main() -> ! {
    let set: u64 = (1 << (SIGINT - 1)) | (1 << (SIGTERM - 1)) | (1 << (SIGCHLD - 1));
    let set_ptr = &set as *const u64 as usize;
    // SAFETY: `set` lives on this frame for the whole call.
    if unsafe { syscall4(RT_SIGPROCMASK, SIG_BLOCK, set_ptr, 0, SIGSET_BYTES) } < 0 {
        exit(2);
    }
    loop {
        // SAFETY: `set` outlives the call; info and timeout may be NULL.
        let sig = unsafe { syscall4(RT_SIGTIMEDWAIT, set_ptr, 0, 0, SIGSET_BYTES) };
        match sig {
            s if s == SIGTERM as isize || s == SIGINT as isize => exit(0),
            s if s == SIGCHLD as isize => reap_children(),
            _ => {} // EINTR and the like: wait again
        }
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    exit(3)
}

/// The entry point: the kernel jumps here with the stack 16-byte aligned
/// and no return address; align and call into Rust.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _start() -> ! {
    core::arch::naked_asm!("xor ebp, ebp", "and rsp, -16", "call {main}", "ud2", main = sym pause_main)
}

#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _start() -> ! {
    core::arch::naked_asm!("mov x29, #0", "mov x30, #0", "bl {main}", "brk #0", main = sym pause_main)
}
