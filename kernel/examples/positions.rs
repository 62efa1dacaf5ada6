//! A periodic publisher and a subscriber, in one process.
//!
//! A user service, `example.vehicle`, declares one periodic task (every 10 ms) that
//! publishes the vehicle's position on topic `positions`, promising a 15 ms DEADLINE and
//! a 50 ms liveliness lease. The main thread subscribes, prints what arrives, and then
//! removes the service: its task stops, its publisher is dropped, and the subscriber is
//! told the publisher is gone.
//!
//! Run: `cargo run --release -p rtpm --example positions [-- --seconds S]` (needs
//! SCHED_FIFO and two CPUs, as the runtime's executor does).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rtpm::event::{NoticeKind, Publisher, PublisherQos, TopicQos};
use rtpm::rt::exec::{Job, TaskOptions, TaskSpec};
use rtpm::rt::hist::{AtomicHistogram, Percentiles};
use rtpm::rt::time::{Clock, MonotonicClock, Nanos};
use rtpm::{Permissions, Runtime, Service, UserContext, UserService};

/// Where a vehicle is: id, metres along its line, speed in m/s.
type Position = (u32, f64, f64);

/// A vehicle that publishes its position every 10 ms.
struct Vehicle {
    publisher: Option<Publisher<Position>>,
    published: Arc<AtomicU64>,
}

impl Service for Vehicle {
    fn name(&self) -> &str {
        "example.vehicle"
    }
}

impl UserService for Vehicle {
    fn start(&mut self, ctx: &mut UserContext<'_>) -> rtpm::Result<()> {
        let mut publisher = self
            .publisher
            .take()
            .ok_or_else(|| rtpm::Error::Invalid("the vehicle has no publisher".into()))?;
        let published = Arc::clone(&self.published);
        ctx.periodic(
            TaskSpec::periodic("position", Nanos::ms(10), Nanos::us(200)),
            TaskOptions::default(),
            move |job: &Job| {
                let t = job.seq as f64 * 0.01;
                if publisher.publish(&(7, 12.5 * t, 12.5)).is_ok() {
                    published.fetch_add(1, Ordering::Relaxed);
                }
            },
        )?;
        Ok(())
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("positions: {e}");
        std::process::exit(1);
    }
}

fn run() -> rtpm::Result<()> {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let passphrase =
        std::env::var("RTPM_PASSPHRASE").unwrap_or_else(|_| "positions example".into());
    let runtime = Runtime::builder()
        .user("user", &passphrase, &[("*", Permissions::ALL)])
        .build()?;
    for w in runtime.warnings() {
        println!("warning: {w}");
    }
    let session = runtime.login("user", &passphrase)?;
    let events = runtime.events(&session)?;
    let qos = TopicQos::default();
    let mut subscriber = events.subscriber::<Position>(&session, "positions", qos)?;
    let publisher = events.publisher::<Position>(
        &session,
        "positions",
        qos,
        PublisherQos {
            deadline: Some(Nanos::ms(15)),
            lease: Some(Nanos::ms(50)),
        },
    )?;
    let published = Arc::new(AtomicU64::new(0));
    let vehicle = runtime.insert_user_service(
        &session,
        Vehicle {
            publisher: Some(publisher),
            published: Arc::clone(&published),
        },
    )?;
    println!("vehicle publishing every 10 ms on `positions` for {seconds} s");

    let latency = AtomicHistogram::new();
    let mut received = 0u64;
    let mut deadline_misses = 0u64;
    let end = MonotonicClock.now().add(Nanos::secs(seconds));
    let mut next_report = MonotonicClock.now().add(Nanos::ms(250));
    while MonotonicClock.now() < end {
        subscriber.wait(Nanos::ms(50));
        while let Some(r) = subscriber.try_take()? {
            latency.record(MonotonicClock.now().since(r.published).get());
            received += 1;
        }
        while let Some(n) = subscriber.try_notice() {
            if n.kind == NoticeKind::DeadlineMissed {
                deadline_misses += 1;
            }
        }
        if MonotonicClock.now() >= next_report {
            println!("  {received} positions received");
            next_report = next_report.add(Nanos::ms(250));
        }
    }
    if received == 0 {
        return Err(rtpm::Error::Invalid("no position arrived".into()));
    }

    // Removing the service stops its task and drops its publisher: the subscriber is told.
    runtime.remove_user_service(&session, vehicle.id())?;
    let mut gone = false;
    while !gone && subscriber.wait(Nanos::ms(500)) {
        while let Some(r) = subscriber.try_take()? {
            latency.record(MonotonicClock.now().since(r.published).get());
            received += 1;
        }
        while let Some(n) = subscriber.try_notice() {
            gone |= n.kind == NoticeKind::PublisherGone;
        }
    }
    if !gone {
        return Err(rtpm::Error::Invalid(
            "the subscriber was not told the publisher left".into(),
        ));
    }
    // The notice comes after the publisher's last sample: take what is left.
    while let Some(r) = subscriber.try_take()? {
        latency.record(MonotonicClock.now().since(r.published).get());
        received += 1;
    }
    println!("vehicle removed; the subscriber was told its publisher is gone");
    let p = Percentiles::of(&latency.snapshot()?);
    println!(
        "received {received} of {} published; publish → take p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; {deadline_misses} DEADLINE notices; {} dropped",
        published.load(Ordering::Relaxed),
        p.p50_ns as f64 / 1e3,
        p.p99_ns as f64 / 1e3,
        p.max_ns as f64 / 1e3,
        subscriber.dropped()
    );
    Ok(())
}
