//! The protocol: pure, sans-IO state machines (no sockets, no clock, no threads, no
//! global randomness). Everything it needs arrives as an argument; everything it wants
//! done leaves through `poll_*`.

pub mod cell;
pub mod config;
pub mod detector;
pub mod discovery;
pub mod frame;
pub mod id;
pub mod idhash;
pub mod membership;
pub mod messaging;
pub mod node;
pub mod routing;
pub mod security;
pub mod sync;
pub mod tasks;
pub mod time;
pub mod wire;

/// A hash map with a fixed hasher: iteration order depends only on the inserted keys,
/// never on a per-process random seed, so runs are reproducible bit for bit.
pub(crate) type DetMap<K, V> = std::collections::HashMap<K, V, idhash::BuildIdHasher>;

pub use config::Config;
pub use id::{Addr, CellId, Member, PeerId};
pub use node::{Event, Node, Role, Transmit};
pub use time::Instant;

#[cfg(test)]
mod purity {
    //! proto is pure: no I/O, no clock, no threads, no global randomness, and neither
    //! rtpm-rt nor rtpm-net. This test reads the sources so the rule cannot regress.

    #[test]
    fn proto_sources_use_nothing_impure() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto");
        let forbidden = [
            "UdpSocket",
            "TcpStream",
            "TcpListener",
            "std::time::Instant",
            "SystemTime",
            "Instant::now",
            "std::thread",
            "thread::spawn",
            "std::fs",
            "std::io::",
            "std::env",
            "thread_rng",
            "rand::random",
            "from_entropy",
            "OsRng",
            "getrandom",
            "rtpm_rt",
            "rtpm_net",
            "unsafe ",
            "Mutex",
            "RwLock",
        ];
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let src = std::fs::read_to_string(&path).unwrap();
                // the list above lives in this file: skip the test module itself
                let src = src.split("mod purity").next().unwrap_or(&src);
                for f in forbidden {
                    assert!(!src.contains(f), "{} uses `{f}`", path.display());
                }
                checked += 1;
            }
        }
        assert!(checked >= 15, "only {checked} proto files found");
    }
}
