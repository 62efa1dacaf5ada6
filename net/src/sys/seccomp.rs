//! Fault injection: a seccomp filter that makes `io_uring_setup` fail with EPERM, the way
//! container runtimes' default profiles do. Used to test the epoll fallback for real.

use crate::error::Error;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
// Offsets in struct seccomp_data.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Installs, on the calling thread (and threads it creates afterwards), a filter under
/// which `io_uring_setup` fails with EPERM. Irreversible for the thread. x86-64 only.
pub(crate) fn deny_io_uring_setup() -> Result<(), Error> {
    if cfg!(not(target_arch = "x86_64")) {
        return Err(Error::Internal(
            "the seccomp fault filter is written for x86-64".into(),
        ));
    }
    let nr = libc::SYS_io_uring_setup as u32;
    let filter = [
        // A = arch; anything but x86-64 is allowed untouched (the filter is x86-64 only).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, OFF_ARCH),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH_X86_64,
            0,
            3,
        ),
        // A = syscall number.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, OFF_NR),
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, nr, 0, 1),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Error::os(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            "the calling thread",
            "",
        ));
    }
    // SAFETY: `prog` points at `filter`, a live array of `len` instructions; the kernel
    // copies the program during the call. Flags 0: this thread only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(Error::os(
            "seccomp(SECCOMP_SET_MODE_FILTER)",
            "the calling thread",
            "the kernel needs CONFIG_SECCOMP_FILTER",
        ));
    }
    Ok(())
}
