//! The event service in one runtime: samples reach every subscriber in order; publishing
//! and subscribing need their permissions (`NotAllowed`, also after a revoke); a full
//! subscriber drops and counts; DEADLINE notices (one per period missed) and liveliness
//! notices (lost, regained, gone) come from the service's monitor task, checked against a
//! simulated clock so the counts are exact.
//!
//! Every test starts a runtime (its executor needs SCHED_FIFO and two CPUs) and skips
//! with the reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;
mod kernel_common;

use std::time::Duration;

use kernel_common::*;
use rtpm::event::{NoticeKind, PublisherQos, TopicQos};
use rtpm::rt::time::Nanos;
use rtpm::{Error, Permission, Permissions};
use rtpm_tests::skip_unless;

type Position = (u32, f64, f64);

#[test]
fn samples_reach_every_subscriber_and_permissions_hold() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = runtime();
    let admin = rt.login("admin", "admin passphrase").unwrap();
    let alice = rt.login("alice", "alice passphrase").unwrap();
    let eve = rt.login("eve", "eve passphrase").unwrap();
    let events = rt.events(&alice).unwrap();
    let qos = TopicQos {
        depth: 8,
        ..TopicQos::default()
    };
    let mut a = events
        .subscriber::<Position>(&alice, "positions", qos)
        .unwrap();
    let mut b = events
        .subscriber::<Position>(&alice, "positions", qos)
        .unwrap();
    let mut p = events
        .publisher::<Position>(&alice, "positions", qos, PublisherQos::default())
        .unwrap();
    for i in 0..5u32 {
        assert_eq!(p.publish(&(i, f64::from(i), 1.5)).unwrap(), 2);
    }
    for s in [&mut a, &mut b] {
        for i in 0..5u32 {
            let r = s.try_take().unwrap().unwrap();
            assert_eq!(r.value, (i, f64::from(i), 1.5));
            assert_eq!(r.seq, u64::from(i));
            assert_eq!(r.publisher, p.id());
        }
        assert!(s.try_take().unwrap().is_none());
    }
    // A full subscriber drops the newest and counts it; the other still gets them.
    for i in 0..10u32 {
        p.publish(&(i, 0.0, 0.0)).unwrap();
        let _ = a.try_take().unwrap();
    }
    assert_eq!(b.dropped(), 2);
    // Another QoS for an existing topic is refused.
    assert!(
        events
            .subscriber::<Position>(&alice, "positions", TopicQos::default())
            .is_err()
    );
    // Eve may neither publish nor subscribe.
    let e = events
        .publisher::<Position>(&eve, "positions", qos, PublisherQos::default())
        .unwrap_err();
    assert!(
        matches!(&e, Error::NotAllowed { permission: Permission::Publish, target, .. } if target == "topic:positions"),
        "{e}"
    );
    assert!(matches!(
        events.subscriber::<Position>(&eve, "positions", qos),
        Err(Error::NotAllowed {
            permission: Permission::Subscribe,
            ..
        })
    ));
    // A publish right granted, used, then revoked: the next publish is refused.
    rt.security()
        .grant(
            &admin,
            "eve",
            "topic:positions",
            Permissions::only(Permission::Publish),
        )
        .unwrap();
    let mut pe = events
        .publisher::<Position>(&eve, "positions", qos, PublisherQos::default())
        .unwrap();
    pe.publish(&(9, 9.0, 9.0)).unwrap();
    rt.security()
        .revoke(
            &admin,
            "eve",
            "topic:positions",
            Permissions::only(Permission::Publish),
        )
        .unwrap();
    assert!(matches!(
        pe.publish(&(9, 9.0, 9.0)),
        Err(Error::NotAllowed {
            permission: Permission::Publish,
            ..
        })
    ));
    let topics = events.topics();
    assert_eq!(topics.len(), 1);
    assert_eq!((topics[0].publishers, topics[0].subscribers), (2, 2));
}

/// Drains the notices a subscriber has after the monitor ran for a while.
fn notices<T: serde::de::DeserializeOwned>(s: &rtpm::event::Subscriber<T>) -> Vec<NoticeKind> {
    // The monitor runs every 1 ms of real time against the simulated clock.
    std::thread::sleep(Duration::from_millis(30));
    std::iter::from_fn(|| s.try_notice())
        .map(|n| n.kind)
        .collect()
}

#[test]
fn deadline_and_liveliness_notices() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let clock = sim_clock();
    let rt = runtime_with_clock(std::sync::Arc::clone(&clock));
    let alice = rt.login("alice", "alice passphrase").unwrap();
    let events = rt.events(&alice).unwrap();
    let qos = TopicQos::default();
    let s = events.subscriber::<u32>(&alice, "heartbeat", qos).unwrap();
    let promise = PublisherQos {
        deadline: Some(Nanos::ms(10)),
        lease: Some(Nanos::ms(45)),
    };
    let mut p = events
        .publisher::<u32>(&alice, "heartbeat", qos, promise)
        .unwrap();
    p.publish(&1).unwrap();
    assert_eq!(notices(&s), vec![], "no period has passed yet");
    // 25 ms without a sample: two 10 ms periods missed, one notice each.
    clock.advance(Nanos::ms(25));
    assert_eq!(
        notices(&s),
        vec![NoticeKind::DeadlineMissed, NoticeKind::DeadlineMissed]
    );
    // A sample restarts the period.
    p.publish(&2).unwrap();
    clock.advance(Nanos::ms(9));
    assert_eq!(notices(&s), vec![]);
    // 46 ms of silence: four more periods, and the 45 ms lease runs out.
    clock.advance(Nanos::ms(37));
    let n = notices(&s);
    assert_eq!(
        n.iter()
            .filter(|k| **k == NoticeKind::DeadlineMissed)
            .count(),
        4,
        "{n:?}"
    );
    assert_eq!(
        n.iter()
            .filter(|k| **k == NoticeKind::LivelinessLost)
            .count(),
        1,
        "{n:?}"
    );
    // Publishing again regains liveliness; asserting it keeps the lease without samples.
    p.publish(&3).unwrap();
    assert_eq!(
        s.try_notice().map(|n| n.kind),
        Some(NoticeKind::LivelinessRegained)
    );
    let publisher = p.id();
    // Dropping the publisher tells the subscriber at once.
    drop(p);
    let gone = s.try_notice().unwrap();
    assert_eq!(
        (gone.kind, gone.publisher),
        (NoticeKind::PublisherGone, publisher)
    );
    clock.advance(Nanos::ms(100));
    assert_eq!(notices(&s), vec![], "a gone publisher is not monitored");
    // Liveliness without DEADLINE: asserted, then lost.
    let promise = PublisherQos {
        deadline: None,
        lease: Some(Nanos::ms(20)),
    };
    let q = events
        .publisher::<u32>(&alice, "heartbeat", qos, promise)
        .unwrap();
    clock.advance(Nanos::ms(15));
    q.assert_liveliness();
    clock.advance(Nanos::ms(15));
    assert_eq!(notices(&s), vec![]);
    clock.advance(Nanos::ms(10));
    assert_eq!(notices(&s), vec![NoticeKind::LivelinessLost]);
    let mut s = s;
    let got: Vec<u32> = std::iter::from_fn(|| s.try_take().unwrap().map(|r| r.value)).collect();
    assert_eq!(got, vec![1, 2, 3]);
}
