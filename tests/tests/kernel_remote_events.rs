//! Events across nodes: two runtimes of one process joined by an overlay on loopback. A
//! subscriber in one finds the topic's publisher in the other through discovery and gets
//! its samples over the overlay, in order on the reliable class, told apart as remote;
//! when the publisher lets its DEADLINE pass the subscriber is told; a publisher closed
//! over there is announced as gone; and when the publisher's node leaves the overlay,
//! the subscriber is told its liveliness is lost. With two nodes publishing one topic (one
//! of them its discovery owner), the subscriber gets the samples of both. Needs
//! SCHED_FIFO and two CPUs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;
mod kernel_common;

use std::time::{Duration, Instant};

use kernel_common::overlay::{join, partition, wait};
use kernel_common::{exclusive, fifo_allowed, two_cpus};
use rtpm::event::{Notice, NoticeKind, PublisherId, PublisherQos, Subscriber, TopicQos};
use rtpm::network::PeerRole;
use rtpm::rt::config::Partition;
use rtpm::rt::time::Nanos;
use rtpm::{Permissions, QosClass, Runtime};
use rtpm_tests::skip_unless;

fn runtime(name: &str, partition: &Partition) -> Runtime {
    Runtime::builder()
        .node_name(name)
        .partition(partition.clone())
        .lock_memory(false)
        .user("admin", "admin passphrase", &[("*", Permissions::ALL)])
        .build()
        .unwrap()
}

/// Waits up to 5 s for a notice of `kind` about `publisher`.
fn notice(sub: &mut Subscriber<u32>, kind: NoticeKind, publisher: PublisherId) -> Notice {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        while sub.try_take().unwrap().is_some() {}
        if let Some(n) = sub.try_notice()
            && n.kind == kind
            && n.publisher == publisher
        {
            return n;
        }
        assert!(
            Instant::now() < until,
            "no {kind:?} notice for {publisher:?}"
        );
        sub.wait(Nanos::ms(20));
    }
}

#[test]
fn remote_samples_deadline_gone_and_liveliness_notices() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let p = partition();
    let publ = runtime("events-pub", &p);
    let subr = runtime("events-sub", &p);
    let (sp, ss) = (
        publ.login("admin", "admin passphrase").unwrap(),
        subr.login("admin", "admin passphrase").unwrap(),
    );
    let (np, _ns) = join(&publ, &sp, &subr, &ss, 2);
    let qos = TopicQos {
        class: QosClass::RELIABLE,
        depth: 256,
    };
    let ev_p = publ.events(&sp).unwrap();
    let ev_s = subr.events(&ss).unwrap();
    let mut sub = ev_s.subscriber::<u32>(&ss, "test.remote.pos", qos).unwrap();
    let mut publisher = ev_p
        .publisher::<u32>(
            &sp,
            "test.remote.pos",
            qos,
            PublisherQos {
                deadline: Some(Nanos::ms(30)),
                lease: None,
            },
        )
        .unwrap();
    wait("the subscribing node subscribes through discovery", || {
        ev_p.topics()
            .iter()
            .any(|t| t.name == "test.remote.pos" && t.remote_subscribers == 1)
    });

    // samples, in order, from a publisher told apart as remote
    for i in 0..50u32 {
        publisher.publish(&i).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while got.len() < 50 && Instant::now() < until {
        sub.wait(Nanos::ms(20));
        while let Some(r) = sub.try_take().unwrap() {
            assert_eq!(sub.publisher_node(r.publisher), Some(publ.node().1));
            got.push((r.value, r.seq, r.publisher));
        }
    }
    let values: Vec<u32> = got.iter().map(|g| g.0).collect();
    assert_eq!(values, (0..50).collect::<Vec<_>>());
    assert!(got.iter().enumerate().all(|(i, g)| g.1 == i as u64));
    let remote_id = got[0].2;
    let info = ev_s
        .topics()
        .into_iter()
        .find(|t| t.name == "test.remote.pos")
        .unwrap();
    assert_eq!(info.remote_publishers, 1, "{info:?}");

    // the publisher stops: its DEADLINE passes, the subscriber is told
    let missed = notice(&mut sub, NoticeKind::DeadlineMissed, remote_id);
    assert_eq!(missed.topic, rtpm::ServiceId::topic("test.remote.pos"));

    // another publisher over there is closed: announced as gone
    let mut second = ev_p
        .publisher::<u32>(&sp, "test.remote.pos", qos, PublisherQos::default())
        .unwrap();
    second.publish(&1000).unwrap();
    let second_id = {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            sub.wait(Nanos::ms(20));
            if let Some(r) = sub.try_take().unwrap()
                && r.value == 1000
            {
                break r.publisher;
            }
            assert!(
                Instant::now() < until,
                "the second publisher's sample never came"
            );
        }
    };
    assert_ne!(second_id, remote_id);
    drop(second);
    notice(&mut sub, NoticeKind::PublisherGone, second_id);

    // the publishing node leaves the overlay: its publisher's liveliness is lost
    publ.remove_network(&sp, np.id()).unwrap();
    let t = Instant::now();
    notice(&mut sub, NoticeKind::LivelinessLost, remote_id);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    drop(publisher);
    drop(sub);
    drop(subr);
    drop(publ);
}

#[test]
fn a_subscriber_gets_the_samples_of_every_node_publishing_the_topic() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let p = partition();
    let (p1, p2, s) = (
        runtime("events-pub-1", &p),
        runtime("events-pub-2", &p),
        runtime("events-sub-2", &p),
    );
    let login = |r: &Runtime| r.login("admin", "admin passphrase").unwrap();
    let (s1, s2, ss) = (login(&p1), login(&p2), login(&s));
    let (_n1, _ns) = join(&p1, &s1, &s, &ss, 4);
    p2.insert_network(&s2, kernel_common::overlay::spec(4))
        .unwrap();
    let n2 = p2.get_network(&s2, "remote4").unwrap();
    wait("the third node joins", || {
        matches!(n2.membership().role(), PeerRole::Peer | PeerRole::SuperPeer)
    });
    let qos = TopicQos {
        class: QosClass::RELIABLE,
        depth: 256,
    };
    let mut sub = s
        .events(&ss)
        .unwrap()
        .subscriber::<u32>(&ss, "test.remote.many", qos)
        .unwrap();
    let (e1, e2) = (p1.events(&s1).unwrap(), p2.events(&s2).unwrap());
    let mut a = e1
        .publisher::<u32>(&s1, "test.remote.many", qos, PublisherQos::default())
        .unwrap();
    let mut b = e2
        .publisher::<u32>(&s2, "test.remote.many", qos, PublisherQos::default())
        .unwrap();
    wait("both publishing nodes have the subscription", || {
        let has = |e: &rtpm::event::EventService| {
            e.topics()
                .iter()
                .any(|t| t.name == "test.remote.many" && t.remote_subscribers == 1)
        };
        has(&e1) && has(&e2)
    });
    for i in 0..20u32 {
        a.publish(&i).unwrap();
        b.publish(&(1000 + i)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut nodes = std::collections::HashMap::new();
    let until = Instant::now() + Duration::from_secs(5);
    while nodes.values().map(Vec::len).sum::<usize>() < 40 && Instant::now() < until {
        sub.wait(Nanos::ms(20));
        while let Some(r) = sub.try_take().unwrap() {
            let node = sub.publisher_node(r.publisher).unwrap();
            nodes.entry(node).or_insert_with(Vec::new).push(r.value);
        }
    }
    assert_eq!(
        nodes.get(&p1.node().1),
        Some(&(0..20).collect::<Vec<u32>>()),
        "{nodes:?}"
    );
    assert_eq!(
        nodes.get(&p2.node().1),
        Some(&(1000..1020).collect::<Vec<u32>>()),
        "{nodes:?}"
    );
}
