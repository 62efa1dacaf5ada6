//! The coordinator: an RPC server answering speed-limit requests (each a sporadic job of
//! its admitted request task), and a subscriber to every vehicle's positions that
//! records each sample's publish-to-delivery latency and the DEADLINE and liveliness
//! notices.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rtpm::event::NoticeKind;
use rtpm::rpc::{OpError, ReplyBuf, Request, RpcServer, ServerSpec};
use rtpm::rt::time::{Clock, MonotonicClock, Nanos};
use rtpm::{Error, Runtime, Session};

use super::peer::{Counters, Workers};
use super::records::{Log, NOTICES, NoticeRecord, SAMPLES, Sample};
use super::scenario::{
    COORDINATOR, POSITIONS, Position, SPEED_LIMIT_OP, SpeedLimitRequest, speed_limit, topic_qos,
};

/// The speed-limit server.
struct Coordinator {
    counters: Arc<Counters>,
}

impl RpcServer for Coordinator {
    fn name(&self) -> &str {
        COORDINATOR
    }

    fn invoke(&self, request: &Request<'_>, reply: &mut ReplyBuf<'_>) -> Result<(), OpError> {
        match request.operation() {
            SPEED_LIMIT_OP => {
                let r: SpeedLimitRequest = request.decode()?;
                Counters::bump(&self.counters.served);
                reply.encode(&speed_limit(r.along_m))
            }
            _ => Err(OpError::NotImplemented),
        }
    }
}

fn create(dir: &Path, name: &str) -> rtpm::Result<Log> {
    let path = dir.join(name);
    Log::create(&path)
        .map_err(|e| Error::Invalid(format!("{}: cannot create: {e}", path.display())))
}

fn kind(k: NoticeKind) -> &'static str {
    match k {
        NoticeKind::DeadlineMissed => "deadline-missed",
        NoticeKind::LivelinessLost => "liveliness-lost",
        NoticeKind::LivelinessRegained => "liveliness-regained",
        NoticeKind::PublisherGone => "publisher-gone",
    }
}

/// Starts the coordinator: registers the server, subscribes, records.
pub fn start(
    rt: &Runtime,
    session: &Session,
    dir: &Path,
    counters: &Arc<Counters>,
    stop: &Arc<AtomicBool>,
) -> rtpm::Result<Workers> {
    let rpc = rt.rpc(session)?;
    // six vehicles at 10 Hz: a request every 1 ms at most is ample; 100 µs each
    rpc.register_server(
        session,
        Coordinator {
            counters: Arc::clone(counters),
        },
        ServerSpec::new(Nanos::ms(1), Nanos::us(100)).queue(64),
    )?;
    let events = rt.events(session)?;
    let mut subscriber = events.subscriber::<Position>(session, POSITIONS, topic_qos())?;
    let mut samples = create(dir, SAMPLES)?;
    let mut notices = create(dir, NOTICES)?;
    let (counters, stop) = (Arc::clone(counters), Arc::clone(stop));
    let thread = std::thread::Builder::new()
        .name("demo-positions".into())
        .spawn(move || {
            // which vehicle each publisher is, learnt from its samples
            let mut vehicles = HashMap::new();
            let mut flushed = MonotonicClock.now();
            while !stop.load(Ordering::Acquire) {
                subscriber.wait(Nanos::ms(50));
                loop {
                    match subscriber.try_take() {
                        Ok(Some(r)) => {
                            let now = MonotonicClock.now().as_nanos();
                            vehicles.insert(r.publisher, r.value.vehicle);
                            Counters::bump(&counters.received);
                            samples.sample(&Sample {
                                recv_ns: now,
                                vehicle: r.value.vehicle,
                                seq: r.value.seq,
                                sent_ns: r.value.sent_ns,
                            });
                        }
                        Ok(None) => break,
                        Err(e) => counters.error(e),
                    }
                }
                while let Some(n) = subscriber.try_notice() {
                    match n.kind {
                        NoticeKind::DeadlineMissed => Counters::bump(&counters.deadline_notices),
                        NoticeKind::LivelinessLost => Counters::bump(&counters.liveliness_lost),
                        _ => {}
                    }
                    notices.notice(&NoticeRecord {
                        at_ns: n.at.as_nanos(),
                        kind: kind(n.kind).to_string(),
                        vehicle: vehicles.get(&n.publisher).copied(),
                    });
                }
                counters
                    .dropped
                    .store(subscriber.dropped(), Ordering::Relaxed);
                if MonotonicClock.now().since(flushed) >= Nanos::ms(250) {
                    samples.flush();
                    notices.flush();
                    flushed = MonotonicClock.now();
                }
            }
            samples.flush();
            notices.flush();
        })
        .map_err(|e| Error::Invalid(format!("cannot start the positions thread: {e}")))?;
    Ok(vec![thread])
}
