//! The CPU wake-up latency request of the kernel's PM QoS (`/dev/cpu_dma_latency`).
//!
//! While a process holds the file open with a value written to it, the idle governor
//! keeps every CPU out of idle states slower to leave than that many microseconds; 0
//! keeps them polling. On a VM that is the difference between waking a halted vCPU
//! (a trip through the hypervisor) and a running one. cyclictest holds 0 by default.

use std::fs::File;
use std::io::Write;

/// A held request; dropping it (closing the file) withdraws it.
#[derive(Debug)]
pub struct LatencyRequest {
    _file: File,
}

/// Asks for at most `us` microseconds of wake-up latency from idle, for as long as the
/// returned request lives.
pub fn hold(us: u32) -> std::io::Result<LatencyRequest> {
    let mut file = File::options().write(true).open("/dev/cpu_dma_latency")?;
    // The device takes a binary s32 (or an ASCII hex string); the binary form is exact.
    let value = i32::try_from(us).unwrap_or(i32::MAX);
    file.write_all(&value.to_ne_bytes())?;
    Ok(LatencyRequest { _file: file })
}
