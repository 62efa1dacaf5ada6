//! The coordinator: an RPC server answering speed-limit requests (each a sporadic job of
//! its admitted request task), and a subscriber to every vehicle's positions that
//! records each sample's publish-to-delivery latency and the DEADLINE and liveliness
//! notices.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rtpm::event::NoticeKind;
use rtpm::rpc::{OpError, ReplyBuf, Request, RpcServer, ServerSpec};
use rtpm::rt::time::{Clock, MonotonicClock, Nanos};
use rtpm::{Error, Runtime, Session};

use super::peer::{Counters, Workers};
use super::records::{Log, NoticeRecord, Sample, notices_file, samples_file};
use super::scenario::{
    COORDINATOR, Position, SPEED_LIMIT_OP, SpeedLimitRequest, positions_topic, speed_limit,
    topic_qos,
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

/// Starts the coordinator: registers the server, subscribes to vehicles 1..=`vehicles`
/// (a thread each, woken by its subscriber, so a sample's delivery time is when it
/// arrived), records.
pub fn start(
    rt: &Runtime,
    session: &Session,
    vehicles: u32,
    dir: &Path,
    counters: &Arc<Counters>,
    stop: &Arc<AtomicBool>,
) -> rtpm::Result<Workers> {
    let rpc = rt.rpc(session)?;
    // six vehicles at 10 Hz: a request every 1 ms at most is ample; 50 µs each
    rpc.register_server(
        session,
        Coordinator {
            counters: Arc::clone(counters),
        },
        ServerSpec::new(Nanos::ms(1), Nanos::us(50)).queue(64),
    )?;
    let events = rt.events(session)?;
    let mut workers = Vec::new();
    for v in 1..=vehicles {
        let mut subscriber =
            events.subscriber::<Position>(session, &positions_topic(v), topic_qos())?;
        let mut samples = create(dir, &samples_file(v))?;
        let mut notices = create(dir, &notices_file(v))?;
        let (counters, stop) = (Arc::clone(counters), Arc::clone(stop));
        let thread = std::thread::Builder::new()
            .name(format!("demo-positions-v{v}"))
            .spawn(move || {
                let mut flushed = MonotonicClock.now();
                let mut dropped = 0;
                let mut alive = true;
                while !stop.load(Ordering::Acquire) {
                    subscriber.wait(Nanos::ms(50));
                    loop {
                        match subscriber.try_take() {
                            Ok(Some(r)) => {
                                let now = MonotonicClock.now().as_nanos();
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
                        // a publisher whose liveliness is lost misses every period after:
                        // the live count leaves those out (the records keep them)
                        match n.kind {
                            NoticeKind::DeadlineMissed if alive => {
                                Counters::bump(&counters.deadline_notices)
                            }
                            NoticeKind::LivelinessLost => {
                                alive = false;
                                Counters::bump(&counters.liveliness_lost)
                            }
                            NoticeKind::LivelinessRegained => alive = true,
                            _ => {}
                        }
                        notices.notice(&NoticeRecord {
                            at_ns: n.at.as_nanos(),
                            kind: kind(n.kind).to_string(),
                            vehicle: Some(v),
                        });
                    }
                    let d = subscriber.dropped();
                    counters.dropped.fetch_add(d - dropped, Ordering::Relaxed);
                    dropped = d;
                    if MonotonicClock.now().since(flushed) >= Nanos::ms(250) {
                        samples.flush();
                        notices.flush();
                        flushed = MonotonicClock.now();
                    }
                }
                samples.flush();
                notices.flush();
            })
            .map_err(|e| Error::Invalid(format!("cannot start a positions thread: {e}")))?;
        workers.push(thread);
    }
    Ok(workers)
}
