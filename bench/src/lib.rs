//! # rtpm-bench: benchmarks and latency tools
//!
//! Criterion benchmarks live in `benches/` (with `harness = false`); shared measurement
//! code lives here. Every headline figure is a ratio against a baseline measured in the
//! same run, and `RESULTS.md` records it with the command that produced it.
