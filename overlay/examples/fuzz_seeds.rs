//! Write the fuzz corpus seeds: one sealed datagram per frame type (encoder round
//! trips), under the fuzz harness's key, into the directory given as the argument.
//!
//! ```text
//! cargo run -p rtpm-overlay --example fuzz_seeds -- overlay/fuzz/corpus/decode
//! ```

use std::process::ExitCode;

use rtpm_overlay::proto::frame::{Delta, Frame, MemberList, OfferKind, Op, Sap, View};
use rtpm_overlay::proto::security::{OverlayKey, Security};
use rtpm_overlay::proto::wire::{FLAG_ENCRYPTED, HEADER_LEN, Header, MAX_DATAGRAM, Writer};
use rtpm_overlay::proto::{Addr, CellId, Member, PeerId};

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: fuzz_seeds DIR   (writes one seed datagram per frame type into DIR)");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("fuzz_seeds: cannot create {dir}: {e}");
        return ExitCode::from(2);
    }
    let m = |i: u128| Member {
        id: PeerId(i),
        addr: Addr(std::net::SocketAddr::from(([10, 0, 0, i as u8], 7000))),
    };
    let cell = CellId::new(5, PeerId(1));
    let members = [m(1), m(2), m(3)]
        .into_iter()
        .collect::<heapless::Vec<_, 8>>();
    let view = View {
        cell,
        version: 3,
        members: members.clone(),
        parent: CellId::new(1, PeerId(9)),
        parent_members: members.clone(),
        root: CellId::new(1, PeerId(9)),
        depth: 1,
    };
    let delta = Delta {
        op: Op::Add,
        key: 77,
        owner: m(4),
        class: 1,
        version: 2,
        lease_ms: 30_000,
    };
    let roster = [m(8)];
    let frames: Vec<Frame> = vec![
        Frame::Solicit {
            nonce: 1,
            attach: CellId::NONE,
            root: CellId::NONE,
        },
        Frame::Offer {
            nonce: 2,
            kind: OfferKind::Peer,
            cell,
            root: view.root,
            depth: 1,
            members: members.clone(),
            saps: [Sap {
                class: 1,
                reliable: true,
                priority: 1,
                addr: m(1).addr,
            }]
            .into_iter()
            .collect(),
        },
        Frame::Bind { nonce: 3, cell },
        Frame::BindAck {
            nonce: 3,
            view: view.clone(),
        },
        Frame::Unbind {
            cell,
            leaving: false,
        },
        Frame::PeerBeat { cell, version: 3 },
        Frame::SpBeat {
            view: Some(view.clone()),
            ack: 1,
            bound: true,
        },
        Frame::CellBeat {
            cell,
            version: 3,
            ack: 0,
            bound_count: 1,
            has_roster: true,
            bound: MemberList::Slice(&roster),
            children: 0,
        },
        Frame::CellView { view: view.clone() },
        Frame::ChildBeat {
            child: cell,
            members: members.clone(),
            peers: 10,
            free: 5,
            open_depth: 1,
            parent: view.parent,
            parent_version: 2,
            sync_epoch: 1,
            sync_upto: 3,
            index_len: 2,
            index_digest: 0x1234,
        },
        Frame::ParentBeat {
            view: Some(view.clone()),
            found: true,
            ack: 0,
            known: true,
        },
        Frame::Attach {
            nonce: 4,
            cell,
            members: members.clone(),
            root: cell,
            peers: 10,
        },
        Frame::Beacon {
            root: cell,
            members: members.clone(),
            peers: 10,
        },
        Frame::Probe {
            nonce: 5,
            cell,
            rel: 0,
        },
        Frame::ProbeAck {
            nonce: 5,
            related: true,
        },
        Frame::Lookup {
            req: 6,
            key: 77,
            requester: m(4),
            hops: 1,
        },
        Frame::LookupReply {
            req: 6,
            key: 77,
            found: Some((m(4), 1)),
            hops: 2,
        },
        Frame::Sync {
            epoch: 1,
            base: 1,
            first: 1,
            ack: 0,
            deltas: [
                Delta {
                    op: Op::Begin,
                    ..delta
                },
                delta,
                Delta {
                    op: Op::Remove,
                    ..delta
                },
                Delta {
                    op: Op::End,
                    ..delta
                },
            ]
            .into_iter()
            .collect(),
        },
        Frame::Data {
            seq: 1,
            msg: 1,
            frag: 0,
            frags: 1,
            bytes: b"hello",
        },
        Frame::Ack { next: 2, sack: 1 },
        Frame::Routed {
            origin: m(4),
            dest: PeerId(7),
            ttl: 8,
            class: 1,
            inner: 19,
            body: &[0; 20],
        },
        Frame::Leave { cell },
    ];
    let key = OverlayKey([0x42; 32]);
    let mut n = 0;
    for encrypt in [false, true] {
        let mut sec = Security::new(0x5250_0001, &key, encrypt, 1, 64);
        for f in &frames {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let len = {
                let mut w = Writer::new(&mut buf[HEADER_LEN..]);
                if f.encode(&mut w).is_err() {
                    continue;
                }
                w.len()
            };
            let h = Header {
                msg_type: f.frame_type() as u8,
                flags: if encrypt { FLAG_ENCRYPTED } else { 0 },
                class: 1,
                len: len as u16,
                overlay: 0x5250_0001,
                sender: PeerId(2),
                dest: PeerId(7),
                seq: sec.next_seq(),
            };
            let mut hb = [0u8; HEADER_LEN];
            h.write(&mut hb);
            buf[..HEADER_LEN].copy_from_slice(&hb);
            buf.truncate(HEADER_LEN + len);
            if sec.seal(&mut buf).is_err() {
                continue;
            }
            let path = format!(
                "{dir}/{}-{:?}",
                if encrypt { "aead" } else { "mac" },
                f.frame_type()
            );
            if let Err(e) = std::fs::write(&path, &buf) {
                eprintln!("fuzz_seeds: cannot write {path}: {e}");
                return ExitCode::from(1);
            }
            n += 1;
        }
    }
    println!("wrote {n} seeds to {dir}");
    ExitCode::SUCCESS
}
