//! The seed paper's ping service and client (listings 6, 8 and 9), in one process.
//!
//! - Listing 6: the runtime is entered with a user and a passphrase, and the RPC kernel
//!   service is inserted into it.
//! - Listing 8: `PingServer`, a user-level RPC server whose operation `PING_OP` is
//!   one-way; it also answers `ECHO_OP` two-way.
//! - Listing 9: the client registers the server with the RPC service, pings it one-way,
//!   calls it two-way with a deadline, and unregisters it.
//!
//! Run: `cargo run --release -p rtpm --example ping [-- --count N]` (needs SCHED_FIFO and
//! two CPUs, as the runtime's executor does). The passphrase of the example's user comes
//! from `RTPM_PASSPHRASE` (any value works: the user is created in memory).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rtpm::config::ServiceKindName;
use rtpm::rpc::{
    CallOptions, OpError, ReplyBuf, Request, RpcRequest, RpcServer, RpcService, ServerSpec,
};
use rtpm::rt::time::Nanos;
use rtpm::{Permissions, Runtime, ServiceId};

/// Listing 8: a user-level RPC server.
struct PingServer {
    pings: AtomicU64,
}

impl PingServer {
    const NAME: &'static str = "example.ping";
    const PING_OP: u32 = 1;
    const ECHO_OP: u32 = 2;

    fn uuid() -> ServiceId {
        ServiceId::from_name(PingServer::NAME)
    }

    fn ping(&self) {
        self.pings.fetch_add(1, Ordering::Relaxed);
    }
}

impl RpcServer for PingServer {
    fn name(&self) -> &str {
        PingServer::NAME
    }

    fn invoke(&self, request: &Request<'_>, reply: &mut ReplyBuf<'_>) -> Result<(), OpError> {
        match request.operation() {
            PingServer::PING_OP => {
                self.ping();
                Ok(())
            }
            PingServer::ECHO_OP => {
                let n: u64 = request.decode()?;
                reply.encode(&n)
            }
            _ => Err(OpError::NotImplemented),
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("ping: {e}");
        std::process::exit(1);
    }
}

fn run() -> rtpm::Result<()> {
    let count: u64 = std::env::args()
        .skip_while(|a| a != "--count")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let passphrase = std::env::var("RTPM_PASSPHRASE").unwrap_or_else(|_| "ping example".into());

    // Listing 6: enter the runtime, insert the RPC kernel service.
    let runtime = Runtime::builder()
        .services(&[ServiceKindName::Events])
        .user("user", &passphrase, &[("*", Permissions::ALL)])
        .build()?;
    for w in runtime.warnings() {
        println!("warning: {w}");
    }
    let session = runtime.login("user", &passphrase)?;
    runtime.insert_kernel_service(&session, RpcService::new())?;
    println!(
        "runtime up: node {}, RPC service inserted",
        runtime.node().0
    );

    // Listing 9: get the RPC service from the runtime, register the server with it.
    let rpc: std::sync::Arc<RpcService> =
        runtime.get_kernel_service(&session, RpcService::uuid())?;
    let server = rpc.register_server(
        &session,
        PingServer {
            pings: AtomicU64::new(0),
        },
        ServerSpec::new(Nanos::us(100), Nanos::us(50)),
    )?;
    println!("registered `{}` ({})", PingServer::NAME, PingServer::uuid());

    // Listing 9's ping(): a one-way request in the seed's style.
    rpc.one_way_invocation(
        &session,
        &RpcRequest::new(PingServer::uuid(), PingServer::PING_OP),
    )?;

    // The same through a client resolved once: one-way, then two-way with a deadline.
    let mut client = rpc.client(&session, PingServer::uuid())?;
    let opts = CallOptions::within(Nanos::ms(20));
    for _ in 1..count {
        loop {
            match client.one_way(PingServer::PING_OP, &(), opts) {
                Ok(()) => break,
                // The request queue is full: the server takes one every 100 µs at most.
                Err(rtpm::Error::ServiceNotAvailable { .. }) => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Err(e) => return Err(e),
            }
        }
    }
    let t0 = std::time::Instant::now();
    while server.server().pings.load(Ordering::Relaxed) < count {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(rtpm::Error::Invalid("the pings did not all arrive".into()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("{count} one-way pings served");
    for i in 0..count {
        let back: u64 = client.two_way(PingServer::ECHO_OP, &i, opts)?;
        if back != i {
            return Err(rtpm::Error::Invalid(format!(
                "echo {i} came back as {back}"
            )));
        }
    }
    let p = client.round_trips()?;
    println!(
        "{count} two-way echoes as jobs of the server's sporadic task: round trip p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        p.p50_ns as f64 / 1e3,
        p.p99_ns as f64 / 1e3,
        p.max_ns as f64 / 1e3
    );
    match client.two_way::<_, ()>(7, &(), opts) {
        Err(rtpm::Error::OperationNotImplemented { operation, .. }) => {
            println!("operation {operation}: not implemented, as listing 8 says")
        }
        other => {
            return Err(rtpm::Error::Invalid(format!(
                "operation 7 answered {other:?}"
            )));
        }
    }
    let stats = server.stats();
    println!(
        "server: {} served, {} not implemented, {} expired",
        stats.served, stats.not_implemented, stats.expired
    );

    // Listing 9's unregisterRPCServer.
    rpc.unregister_server(&session, PingServer::uuid())?;
    println!("unregistered; the request task's capacity is free again");
    runtime.logout(&session)?;
    Ok(())
}
