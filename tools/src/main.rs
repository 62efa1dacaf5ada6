//! `rtpm`, the command line of the rtpm real-time middleware.
//!
//! Each subcommand lives in its own module under `cmd/`. Exit codes: 0 for success, 1
//! when the command ran and its answer is "no" (a rejected task set, a failed probe), 2
//! for bad input (an unreadable file, a bad flag), with a message naming what was wrong.

// The subcommand list starts empty and fills as capabilities land.
#![allow(unreachable_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// rtpm: real-time peer-to-peer middleware for multicore Linux.
#[derive(Parser, Debug)]
#[command(name = "rtpm", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {}

fn main() -> ExitCode {
    match Cli::parse().command {}
}
