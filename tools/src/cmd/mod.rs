//! The subcommands, one module each.

pub mod admit;
pub mod demo;
pub mod latency;
pub mod node;
pub mod shield;
pub mod status;
pub mod topology;
pub mod user;

use std::path::Path;

use rtpm_rt::config::Partition;

/// Exit code: the command ran and its answer is "yes".
pub const OK: u8 = 0;
/// Exit code: the command ran and its answer is "no".
pub const NO: u8 = 1;
/// Exit code: bad input (file, flag, config).
pub const BAD_INPUT: u8 = 2;

/// The effective partition: `DIR/cores/*.toml` when a config folder is given, otherwise the
/// embedded default. Errors are printed and mapped to exit code 2.
pub fn partition(config: Option<&Path>) -> Result<Partition, u8> {
    let loaded = match config {
        Some(dir) => Partition::load(dir),
        None => Partition::embedded_default(),
    };
    loaded.map_err(|e| {
        eprintln!("rtpm: {e}");
        BAD_INPUT
    })
}
