//! A two-process RPC over the overlay: a server in one process, its client in another,
//! joined by an overlay on loopback; the client finds the server through discovery and
//! calls it with the same API as a local one.
//!
//! - `remote_rpc` (no mode): runs both — it spawns itself with `--serve`, then calls.
//! - `remote_rpc --serve`: joins the overlay, registers `example.remote` and serves until
//!   a client sends it `STOP` (or `--seconds` pass).
//! - `remote_rpc --call`: joins the overlay, finds `example.remote`, then: two-way echoes
//!   (round-trip percentiles), one-way counts, a call whose deadline is too short
//!   (`DeadlineExceeded`), an unknown id (`ServiceNotFound`), and `STOP`.
//!
//! Options: `--count N` (echoes, default 1000), `--group ADDR:PORT` (the overlay's
//! multicast group; both processes must use the same one; default
//! `239.255.77.1:47700`), `--seconds S` (how long `--serve` waits at most, default 60).
//!
//! Run: `cargo run --release -p rtpm --example remote_rpc [-- --count 500]` (needs
//! SCHED_FIFO and two CPUs, as the runtime's executor does). The overlay key is fixed in
//! this example: never reuse it.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtpm::config::overlay_config;
use rtpm::network::{OverlaySpec, PeerRole};
use rtpm::rpc::{CallOptions, OpError, ReplyBuf, Request, RpcServer, ServerSpec};
use rtpm::rt::time::Nanos;
use rtpm::{Error, Permissions, Runtime, ServiceId};

const NAME: &str = "example.remote";
const ECHO: u32 = 1;
const COUNT: u32 = 2;
const SLOW: u32 = 3;
const STOP: u32 = 4;
const TOTAL: u32 = 5;

#[derive(Default)]
struct Remote {
    counted: AtomicU64,
    stop: AtomicBool,
}

impl RpcServer for Remote {
    fn name(&self) -> &str {
        NAME
    }

    fn invoke(&self, request: &Request<'_>, reply: &mut ReplyBuf<'_>) -> Result<(), OpError> {
        match request.operation() {
            ECHO => {
                let n: u64 = request.decode()?;
                reply.encode(&n)
            }
            COUNT => {
                self.counted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            SLOW => {
                // longer than the caller's deadline: its reply comes too late
                std::thread::sleep(Duration::from_millis(3));
                reply.encode(&())
            }
            TOTAL => reply.encode(&self.counted.load(Ordering::Relaxed)),
            STOP => {
                self.stop.store(true, Ordering::Release);
                Ok(())
            }
            _ => Err(OpError::NotImplemented),
        }
    }
}

struct Args {
    serve: bool,
    call: bool,
    count: u64,
    group: String,
    seconds: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        serve: false,
        call: false,
        count: 1000,
        group: "239.255.77.1:47700".into(),
        seconds: 60,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut value = |flag: &str| it.next().ok_or(format!("{flag} needs a value"));
        match x.as_str() {
            "--serve" => a.serve = true,
            "--call" => a.call = true,
            "--count" => {
                a.count = value("--count")?
                    .parse()
                    .map_err(|_| "--count takes a number of echoes, like 1000".to_string())?
            }
            "--group" => a.group = value("--group")?,
            "--seconds" => {
                a.seconds = value("--seconds")?
                    .parse()
                    .map_err(|_| "--seconds takes a whole number of seconds".to_string())?
            }
            "-h" | "--help" => {
                println!(
                    "remote_rpc [--serve | --call] [--count N] [--group ADDR:PORT] [--seconds S]\n\
                     Without a mode it spawns a server process and calls it."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    Ok(a)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("remote_rpc: {e}");
            std::process::exit(2);
        }
    };
    let r = match (a.serve, a.call) {
        (true, _) => serve(&a),
        (false, true) => call(&a),
        (false, false) => both(&a),
    };
    if let Err(e) = r {
        eprintln!("remote_rpc: {e}");
        std::process::exit(1);
    }
}

fn runtime(node: &str, group: &str) -> rtpm::Result<(Runtime, rtpm::Session)> {
    let runtime = Runtime::builder()
        .node_name(node)
        .lock_memory(false)
        .user("user", "remote example", &[("*", Permissions::ALL)])
        .build()?;
    let session = runtime.login("user", "remote example")?;
    let text = format!(
        r#"
name = "example"
multicast = "{group}"
key = "unused"
heartbeat = "10ms"
[commands]
min_interarrival = "400us"
batch = 2
[[sap]]
address = "127.0.0.1:0"
class = 0
[[sap]]
address = "127.0.0.1:0"
class = 1
reliability = "reliable"
min_interarrival = "400us"
batch = 2
"#
    );
    let config = overlay_config(&text)?;
    let spec =
        OverlaySpec::new(config, None).key(rtpm::overlay::proto::security::OverlayKey([0x5e; 32]));
    let id = runtime.insert_network(&session, spec)?;
    let net = runtime.get_network(&session, id)?;
    let t = Instant::now();
    while !matches!(
        net.membership().role(),
        PeerRole::Peer | PeerRole::SuperPeer
    ) {
        if t.elapsed() > Duration::from_secs(10) {
            return Err(Error::Invalid("the overlay was not joined in 10 s".into()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((runtime, session))
}

fn serve(a: &Args) -> rtpm::Result<()> {
    let (runtime, session) = runtime("remote-server", &a.group)?;
    let rpc = runtime.rpc(&session)?;
    let server = rpc.register_server(
        &session,
        Remote::default(),
        ServerSpec::new(Nanos::us(200), Nanos::us(40)),
    )?;
    println!(
        "server: node {} serves `{NAME}` on overlay `example`",
        runtime.node().1
    );
    let t = Instant::now();
    while !server.server().stop.load(Ordering::Acquire) {
        if t.elapsed() > Duration::from_secs(a.seconds) {
            println!("server: no STOP after {} s, leaving", a.seconds);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = server.stats();
    println!(
        "server: {} requests from other nodes, {} served, {} expired",
        st.remote, st.served, st.expired
    );
    Ok(())
}

fn call(a: &Args) -> rtpm::Result<()> {
    let (runtime, session) = runtime("remote-client", &a.group)?;
    // wait until this node shares a cell with another one (the server's)
    let net = runtime.get_network(&session, "example")?;
    let me = runtime.node().1;
    let t = Instant::now();
    while !net.membership().cell().is_some_and(|c| {
        matches!(
            net.membership().role(),
            PeerRole::Peer | PeerRole::SuperPeer
        ) && c
            .super_peers
            .iter()
            .chain(c.members.iter())
            .any(|n| *n != me)
    }) {
        if t.elapsed() > Duration::from_secs(10) {
            return Err(Error::Invalid(
                "no other node joined this overlay in 10 s: is the server running with the same --group?".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let rpc = runtime.rpc(&session)?;
    let id = ServiceId::from_name(NAME);
    let t = Instant::now();
    let mut client = loop {
        match rpc.client(&session, id) {
            Ok(c) => break c,
            Err(Error::ServiceNotFound { .. }) if t.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e),
        }
    };
    println!(
        "client: found `{NAME}` on node {} through discovery (remote: {})",
        client
            .remote_node()
            .map_or_else(|| "here".into(), |n| n.to_string()),
        client.is_remote()
    );
    let opts = CallOptions::within(Nanos::ms(100));
    for i in 0..a.count {
        let back: u64 = client.two_way(ECHO, &i, opts)?;
        if back != i {
            return Err(Error::Invalid(format!("echo {i} came back as {back}")));
        }
    }
    let p = client.round_trips()?;
    println!(
        "client: {} two-way echoes over the overlay: round trip p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        a.count,
        p.p50_ns as f64 / 1e3,
        p.p99_ns as f64 / 1e3,
        p.max_ns as f64 / 1e3
    );
    for _ in 0..100 {
        // paced: a one-way request that finds the server's queue full is dropped there
        client.one_way(COUNT, &(), opts)?;
        std::thread::sleep(Duration::from_micros(500));
    }
    let t = Instant::now();
    loop {
        let n: u64 = client.two_way(TOTAL, &(), opts)?;
        if n == 100 {
            break;
        }
        if t.elapsed() > Duration::from_secs(5) {
            return Err(Error::Invalid(format!(
                "only {n} of 100 one-way requests ran"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("client: 100 one-way requests ran on the server");
    match client.two_way::<_, ()>(SLOW, &(), CallOptions::within(Nanos::ms(1))) {
        Err(Error::DeadlineExceeded { .. }) => {
            println!("client: a 1 ms call to a 3 ms operation: deadline exceeded")
        }
        other => {
            return Err(Error::Invalid(format!("the slow call answered {other:?}")));
        }
    }
    match rpc.client(&session, ServiceId::from_name("example.nobody")) {
        Err(Error::ServiceNotFound { .. }) => println!("client: `example.nobody`: not found"),
        other => return Err(Error::Invalid(format!("example.nobody: {other:?}"))),
    }
    std::thread::sleep(Duration::from_millis(10));
    client.one_way(STOP, &(), opts)?;
    println!("client: told the server to stop");
    Ok(())
}

fn both(a: &Args) -> rtpm::Result<()> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Invalid(format!("cannot find this program to spawn it: {e}")))?;
    let pid = std::process::id();
    let group = format!(
        "239.255.{}.{}:{}",
        (pid >> 8) % 250,
        pid % 250 + 1,
        40000 + pid % 20000
    );
    let mut child: Child = Command::new(exe)
        .args(["--serve", "--group", &group, "--seconds", "30"])
        .spawn()
        .map_err(|e| Error::Invalid(format!("cannot spawn the server process: {e}")))?;
    let called = call(&Args {
        serve: false,
        call: true,
        count: a.count,
        group,
        seconds: a.seconds,
    });
    if called.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| Error::Invalid(format!("waiting for the server process: {e}")))?;
    called?;
    if !status.success() {
        return Err(Error::Invalid(format!(
            "the server process ended with {status}"
        )));
    }
    println!("both processes done");
    Ok(())
}
