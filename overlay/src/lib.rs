//! # rtpm-overlay: the P3 overlay
//!
//! (model documented below once the protocol lands)

#![forbid(unsafe_code)]

pub mod error;
pub mod proto;
pub mod sim;

pub use error::Error;
