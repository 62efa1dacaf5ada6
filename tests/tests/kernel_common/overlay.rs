//! Two runtimes of one process joined by an overlay on loopback, for the remote tests.

use std::time::Duration;

use rtpm::config::overlay_config;
use rtpm::network::{Network, OverlaySpec, PeerRole};
use rtpm::rt::config::Partition;
use rtpm::{Runtime, Session};
use std::sync::Arc;

/// An overlay named `remote{tag}` on loopback (multicast group and port from the pid, so
/// that parallel test binaries do not meet), class 0 best-effort and class 1 reliable.
pub fn spec(tag: u8) -> OverlaySpec {
    let pid = std::process::id();
    let text = format!(
        r#"
name = "remote{tag}"
multicast = "239.{a}.{b}.{tag}:{port}"
key = "unused"
heartbeat = "10ms"
[commands]
batch = 8
[[sap]]
address = "127.0.0.1:0"
class = 0
[[sap]]
address = "127.0.0.1:0"
class = 1
reliability = "reliable"
"#,
        a = 150 + pid % 100,
        b = (pid / 100) % 250,
        port = 20000 + (pid % 20000) + 40 + tag as u32
    );
    OverlaySpec::new(overlay_config(&text).unwrap(), None)
        .key(rtpm::overlay::proto::security::OverlayKey([7; 32]))
}

/// Polls `f` every 5 ms for up to 10 s; panics naming `what` when it never holds.
pub fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < until, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The embedded partition: computed before the first runtime confines this process's
/// threads off the RT core.
pub fn partition() -> Partition {
    Partition::embedded_default().unwrap()
}

/// Inserts overlay `tag` into both runtimes and waits until they share a cell.
pub fn join(
    a: &Runtime,
    sa: &Session,
    b: &Runtime,
    sb: &Session,
    tag: u8,
) -> (Arc<dyn Network>, Arc<dyn Network>) {
    a.insert_network(sa, spec(tag)).unwrap();
    b.insert_network(sb, spec(tag)).unwrap();
    let name = format!("remote{tag}");
    let (na, nb) = (
        a.get_network(sa, name.as_str()).unwrap(),
        b.get_network(sb, name.as_str()).unwrap(),
    );
    wait("both join one cell", || {
        matches!(na.membership().role(), PeerRole::Peer | PeerRole::SuperPeer)
            && matches!(nb.membership().role(), PeerRole::Peer | PeerRole::SuperPeer)
            && na.membership().cell().map(|c| c.cell) == nb.membership().cell().map(|c| c.cell)
    });
    (na, nb)
}
