//! A simulated vehicle: a user service whose periodic task publishes the vehicle's
//! position at 100 Hz through the event service (promising a DEADLINE and a liveliness
//! lease), and a best-effort thread that asks the coordinator for the speed limit at
//! its position over two-way RPC with a deadline, and drives at that speed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rtpm::event::{Publisher, PublisherQos};
use rtpm::rpc::{CallOptions, RpcClient};
use rtpm::rt::exec::{Job, TaskOptions, TaskSpec};
use rtpm::rt::time::{Clock, MonotonicClock, Nanos, sleep_until};
use rtpm::{Error, Runtime, Service, Session, UserContext, UserService};

use super::peer::{Counters, Workers};
use super::records::{Log, Outcome, RPCS, RpcRecord};
use super::scenario::{
    Position, SPEED_LIMIT_OP, Scenario, SpeedLimitRequest, coordinator_id, positions_topic,
    topic_qos,
};

/// Where the vehicle is and how fast it goes, shared by its task and its RPC thread
/// (f64 bits in atomics: the task takes no lock).
#[derive(Debug)]
struct Motion {
    along_m: AtomicU64,
    speed_mps: AtomicU64,
}

impl Motion {
    fn get(a: &AtomicU64) -> f64 {
        f64::from_bits(a.load(Ordering::Relaxed))
    }
    fn set(a: &AtomicU64, v: f64) {
        a.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// The publishing service.
struct Vehicle {
    number: u32,
    period: Nanos,
    wcet: Nanos,
    publisher: Option<Publisher<Position>>,
    motion: Arc<Motion>,
    counters: Arc<Counters>,
}

impl Service for Vehicle {
    fn name(&self) -> &str {
        "demo.vehicle"
    }
}

impl UserService for Vehicle {
    fn start(&mut self, ctx: &mut UserContext<'_>) -> rtpm::Result<()> {
        let mut publisher = self
            .publisher
            .take()
            .ok_or_else(|| Error::Invalid("the vehicle has no publisher".into()))?;
        let (number, motion, counters) = (
            self.number,
            Arc::clone(&self.motion),
            Arc::clone(&self.counters),
        );
        let dt = self.period.get() as f64 / 1e9;
        ctx.periodic(
            TaskSpec::periodic("position", self.period, self.wcet),
            TaskOptions::default(),
            move |job: &Job| {
                let speed = Motion::get(&motion.speed_mps);
                let along = Motion::get(&motion.along_m) + speed * dt;
                Motion::set(&motion.along_m, along);
                let p = Position {
                    vehicle: number,
                    seq: job.seq,
                    sent_ns: MonotonicClock.now().as_nanos(),
                    along_m: along,
                    speed_mps: speed,
                };
                match publisher.publish(&p) {
                    Ok(_) => Counters::bump(&counters.published),
                    Err(_) => Counters::bump(&counters.publish_errors),
                }
            },
        )?;
        Ok(())
    }
}

/// Starts vehicle `number`: its publishing service and its speed-limit thread.
pub fn start(
    rt: &Runtime,
    session: &Session,
    scenario: &Scenario,
    number: u32,
    dir: &Path,
    counters: &Arc<Counters>,
    stop: &Arc<AtomicBool>,
) -> rtpm::Result<Workers> {
    let events = rt.events(session)?;
    let publisher = events.publisher::<Position>(
        session,
        &positions_topic(number),
        topic_qos(),
        PublisherQos {
            deadline: Some(scenario.position_deadline),
            lease: Some(scenario.position_lease),
        },
    )?;
    // every vehicle starts somewhere else on its line, at 50 km/h
    let motion = Arc::new(Motion {
        along_m: AtomicU64::new((f64::from(number) * 150.0).to_bits()),
        speed_mps: AtomicU64::new((50.0f64 / 3.6).to_bits()),
    });
    rt.insert_user_service(
        session,
        Vehicle {
            number,
            period: scenario.position_period,
            wcet: scenario.position_wcet,
            publisher: Some(publisher),
            motion: Arc::clone(&motion),
            counters: Arc::clone(counters),
        },
    )?;
    let rpc = rt.rpc(session)?;
    let mut log = Log::create(&dir.join(RPCS))
        .map_err(|e| Error::Invalid(format!("{}: cannot create: {e}", dir.join(RPCS).display())))?;
    let (session, counters, stop) = (session.clone(), Arc::clone(counters), Arc::clone(stop));
    let (period, deadline) = (scenario.rpc_period, scenario.rpc_deadline);
    let thread = std::thread::Builder::new()
        .name("demo-speed-limit".into())
        .spawn(move || {
            let mut client: Option<RpcClient> = None;
            let mut next = MonotonicClock.now();
            let mut flushed = next;
            while !stop.load(Ordering::Acquire) {
                next = next.add(period);
                sleep_until(next);
                let issued = MonotonicClock.now();
                let req = SpeedLimitRequest {
                    vehicle: number,
                    along_m: Motion::get(&motion.along_m),
                };
                let outcome = match client.as_mut() {
                    Some(c) => {
                        c.two_way::<_, f64>(SPEED_LIMIT_OP, &req, CallOptions::within(deadline))
                    }
                    None => rpc.client(&session, coordinator_id()).and_then(|mut c| {
                        let r = c.two_way::<_, f64>(
                            SPEED_LIMIT_OP,
                            &req,
                            CallOptions::within(deadline),
                        );
                        client = Some(c);
                        r
                    }),
                };
                let rtt_ns = MonotonicClock.now().since(issued).get();
                let outcome = match outcome {
                    Ok(limit) => {
                        Motion::set(&motion.speed_mps, limit);
                        Counters::bump(&counters.rpc_ok);
                        Outcome::Ok
                    }
                    Err(e) => {
                        let o = match &e {
                            Error::DeadlineExceeded { .. } => Outcome::Timeout,
                            Error::ServiceNotFound { .. } => Outcome::NotFound,
                            Error::ServiceNotAvailable { .. } => Outcome::Unavailable,
                            _ => Outcome::Failed,
                        };
                        if o == Outcome::Timeout {
                            Counters::bump(&counters.rpc_timeout);
                        } else {
                            // resolve again next time: the coordinator may be elsewhere
                            client = None;
                            Counters::bump(&counters.rpc_failed);
                        }
                        counters.error(&e);
                        o
                    }
                };
                log.rpc(&RpcRecord {
                    issued_ns: issued.as_nanos(),
                    vehicle: number,
                    outcome,
                    rtt_ns,
                });
                if MonotonicClock.now().since(flushed) >= Nanos::ms(250) {
                    log.flush();
                    flushed = MonotonicClock.now();
                }
                // a late round catches up rather than bursting
                let now = MonotonicClock.now();
                if now > next.add(period) {
                    next = now;
                }
            }
            log.flush();
        })
        .map_err(|e| Error::Invalid(format!("cannot start the speed-limit thread: {e}")))?;
    Ok(vec![thread])
}
