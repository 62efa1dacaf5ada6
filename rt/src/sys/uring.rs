//! The io_uring probe: a raw `io_uring_setup`, closed at once.

use std::io;

/// Sets up a two-entry io_uring and closes it.
pub fn probe_setup() -> io::Result<()> {
    // `struct io_uring_params` is 120 bytes of u32s; all zero asks for defaults.
    let mut params = [0u32; 30];
    // SAFETY: `params` is a writable, zeroed io_uring_params-sized buffer that outlives the
    // call; the kernel writes the ring offsets into it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            2 as libc::c_uint,
            params.as_mut_ptr(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is the ring descriptor just returned to us, owned by nobody else.
    unsafe {
        libc::close(fd as libc::c_int);
    }
    Ok(())
}
