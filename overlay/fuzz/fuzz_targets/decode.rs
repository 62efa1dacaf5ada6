//! Fuzz the datagram decoder: fixed header, frame bodies, security open, and a whole
//! node's `handle_datagram`. Any input must decode or be rejected; nothing may panic.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use rtpm_overlay::proto::frame::Frame;
use rtpm_overlay::proto::security::{OverlayKey, Security};
use rtpm_overlay::proto::wire::{Header, MAX_PAYLOAD};
use rtpm_overlay::proto::{Addr, Config, Instant, Node, PeerId};

/// The harness key (the seed generator seals with the same one, so seeds pass the MAC).
const KEY: OverlayKey = OverlayKey([0x42; 32]);
const OVERLAY: u32 = 0x5250_0001;

thread_local! {
    static STATE: RefCell<(Security, Security, Node)> = RefCell::new({
        let a = Addr("10.0.0.1:7000".parse().unwrap());
        let g = Addr("239.7.7.7:7000".parse().unwrap());
        let mut node = Node::new(Config::new(PeerId(7), a, g, OVERLAY, KEY)).unwrap();
        node.join(Instant(0)).unwrap();
        (
            Security::new(OVERLAY, &KEY, false, 1, 64),
            Security::new(OVERLAY, &KEY, true, 1, 64),
            node,
        )
    });
}

fuzz_target!(|data: &[u8]| {
    // the header and every frame body type, without authentication
    if let Ok((h, payload)) = Header::parse(data, OVERLAY) {
        let _ = Frame::decode(h.msg_type, payload);
    }
    if let Some((&ty, body)) = data.split_first() {
        let _ = Frame::decode(ty, body);
    }
    STATE.with(|s| {
        let (plain, sealed, node) = &mut *s.borrow_mut();
        let mut scratch = [0u8; MAX_PAYLOAD];
        if let Ok((h, payload)) = plain.open(data, &mut scratch) {
            let _ = Frame::decode(h.msg_type, payload);
        }
        let mut scratch = [0u8; MAX_PAYLOAD];
        let _ = sealed.open(data, &mut scratch);
        node.handle_datagram(Addr("10.0.0.2:7000".parse().unwrap()), data, Instant(1));
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
    });
});
