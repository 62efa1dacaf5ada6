//! The control socket: how `rtpm status` (and tools) ask a running node.
//!
//! A Unix stream socket (mode 0600: only the node's user may ask), served by one
//! best-effort thread on the general cores. Each connection carries requests, one JSON
//! object per line, each answered by one JSON line: `{"ok": true, …}` or
//! `{"ok": false, "error": "…"}`.
//!
//! | request | answer |
//! |---|---|
//! | `{"cmd":"status"}` | `node` (name, id, pid), `warnings`, `networks` (role, cell, members, parent, SAPs, message counters with drops by reason, task names), `tasks` (every admitted task's accounting: releases, deadline misses, latency percentiles) |
//! | `{"cmd":"lookup","network":N,"key":UUID}` or `…,"node":UUID,"class":C}` | `found` (node id or null); the second form looks up a node's SAP |
//! | `{"cmd":"ping","network":N,"to":UUID,"class":C,"count":K,"size":B,"interval_us":I}` | a ping-pong run on the probe port (one ping every I µs if given): `rtt_ns`, `one_way_ns` percentiles |
//! | `{"cmd":"flood","network":N,"to":UUID,"class":C,"count":K,"size":B,"run":R}` | sends K sequence-numbered messages; `elapsed_ns` |
//! | `{"cmd":"streams","network":N}` | what arrived on the probe port, per (sender, class, run) |
//!
//! `network` may be left out when the node has one network. The socket is removed when
//! the runtime stops. A socket file left by a node that died is replaced; one that a
//! running node answers on is refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use rtpm_rt::time::Nanos;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::id::{NodeId, ServiceId};
use crate::kernel::Kernel;
use crate::network::{Network, sap_service};
use crate::qos::QosClass;

/// Longest request line.
const MAX_LINE: u64 = 64 * 1024;
/// How long one connection may stay idle.
const IDLE: Duration = Duration::from_secs(30);

/// A request on the control socket (see the [module documentation](self)).
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
enum Request {
    Status,
    Lookup {
        #[serde(default)]
        network: Option<String>,
        #[serde(default)]
        key: Option<ServiceId>,
        #[serde(default)]
        node: Option<NodeId>,
        #[serde(default)]
        class: Option<u8>,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    Ping {
        #[serde(default)]
        network: Option<String>,
        to: NodeId,
        class: u8,
        count: u64,
        #[serde(default = "default_size")]
        size: usize,
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// One ping every this many µs, sent by the control thread (0 or absent: the
        /// next ping leaves as the pong arrives).
        #[serde(default)]
        interval_us: Option<u64>,
    },
    Flood {
        #[serde(default)]
        network: Option<String>,
        to: NodeId,
        class: u8,
        count: u64,
        #[serde(default = "default_size")]
        size: usize,
        #[serde(default)]
        run: u64,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    Streams {
        #[serde(default)]
        network: Option<String>,
    },
}

fn default_size() -> usize {
    64
}

/// The running control socket. Dropping it stops the thread and removes the file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (its folder is created) and serves it for `kernel`.
    pub(crate) fn start(
        path: &Path,
        kernel: Weak<Kernel>,
        warnings: Vec<String>,
    ) -> Result<ControlServer> {
        let bad = |what: &str, e: std::io::Error| {
            Error::Invalid(format!(
                "control socket {}: {what}: {e}; set `control` in node.toml's [node] to a writable path",
                path.display()
            ))
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| bad("cannot create its folder", e))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(Error::Invalid(format!(
                    "control socket {} is in use by a running node: stop it, or give this node another `control` path in node.toml",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(|e| bad("cannot remove the stale socket", e))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| bad("cannot bind", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| bad("cannot restrict it to this user", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("rtpm-control".into())
                .spawn(move || serve(listener, kernel, warnings, stop))
                .map_err(|e| bad("cannot start its thread", e))?
        };
        tracing::info!(socket = %path.display(), "control socket open");
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // wake the accept
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(
    listener: UnixListener,
    kernel: Weak<Kernel>,
    warnings: Vec<String>,
    stop: Arc<AtomicBool>,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(IDLE));
        let Ok(mut out) = conn.try_clone() else {
            continue;
        };
        let mut lines = BufReader::new(conn.take(MAX_LINE * 64)).lines();
        while let Some(Ok(line)) = lines.next() {
            if line.trim().is_empty() {
                continue;
            }
            let answer = match kernel.upgrade() {
                Some(k) => answer(&k, &warnings, &line),
                None => json!({"ok": false, "error": "the runtime is stopping"}),
            };
            if writeln!(out, "{answer}").is_err() {
                break;
            }
            if stop.load(Ordering::Acquire) {
                return;
            }
        }
    }
}

fn failure(e: impl std::fmt::Display) -> Value {
    json!({"ok": false, "error": e.to_string()})
}

fn network(k: &Kernel, name: Option<&str>) -> std::result::Result<Arc<dyn Network>, Value> {
    match name {
        Some(n) => k.networks.get(n).map_err(failure),
        None => {
            let all = k.networks.networks();
            match all.len() {
                1 => Ok(Arc::clone(&all[0])),
                0 => Err(failure("this node has no network")),
                _ => Err(failure(format!(
                    "this node has {} networks: say which with \"network\" ({})",
                    all.len(),
                    all.iter().map(|n| n.name()).collect::<Vec<_>>().join(", ")
                ))),
            }
        }
    }
}

fn answer(k: &Kernel, warnings: &[String], line: &str) -> Value {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => {
            return failure(format!(
                "bad request ({e}); send one JSON object per line, e.g. {{\"cmd\":\"status\"}}"
            ));
        }
    };
    match req {
        Request::Status => status(k, warnings),
        Request::Lookup {
            network: n,
            key,
            node,
            class,
            timeout_ms,
        } => {
            let net = match network(k, n.as_deref()) {
                Ok(n) => n,
                Err(e) => return e,
            };
            let key = match (key, node) {
                (Some(key), None) => key,
                (None, Some(node)) => sap_service(node, class.unwrap_or(0)),
                _ => return failure("lookup: give either \"key\" or \"node\" (and \"class\")"),
            };
            let timeout = Nanos::ms(timeout_ms.unwrap_or(1000));
            match net.discovery().lookup(key, timeout) {
                Ok(found) => json!({"ok": true, "key": key, "found": found}),
                Err(e) => failure(e),
            }
        }
        Request::Ping {
            network: n,
            to,
            class,
            count,
            size,
            timeout_ms,
            interval_us,
        } => {
            let net = match network(k, n.as_deref()) {
                Ok(n) => n,
                Err(e) => return e,
            };
            let Some(p) = net.probe() else {
                return failure("this network has no probe port");
            };
            let timeout = Nanos::ms(timeout_ms.unwrap_or(10_000));
            let interval = Nanos::us(interval_us.unwrap_or(0));
            match p.ping_every(
                to,
                QosClass(class),
                count,
                size,
                interval,
                Nanos::ms(100),
                timeout,
            ) {
                Ok(r) => json!({"ok": true, "ping": r}),
                Err(e) => failure(e),
            }
        }
        Request::Flood {
            network: n,
            to,
            class,
            count,
            size,
            run,
            timeout_ms,
        } => {
            let net = match network(k, n.as_deref()) {
                Ok(n) => n,
                Err(e) => return e,
            };
            let Some(p) = net.probe() else {
                return failure("this network has no probe port");
            };
            let timeout = Nanos::ms(timeout_ms.unwrap_or(30_000));
            match p.flood(to, QosClass(class), run, count, size, timeout) {
                Ok(t) => json!({"ok": true, "sent": count, "elapsed_ns": t.get()}),
                Err(e) => failure(e),
            }
        }
        Request::Streams { network: n } => {
            let net = match network(k, n.as_deref()) {
                Ok(n) => n,
                Err(e) => return e,
            };
            match net.probe() {
                Some(p) => json!({"ok": true, "streams": p.streams()}),
                None => failure("this network has no probe port"),
            }
        }
    }
}

fn status(k: &Kernel, warnings: &[String]) -> Value {
    let tasks = match k.with_executor("the control socket", "status", |e| e.report()) {
        Ok(Ok(r)) => serde_json::to_value(r).unwrap_or(Value::Null),
        _ => json!([]),
    };
    let networks: Vec<Value> = k
        .networks
        .networks()
        .iter()
        .map(|n| match n.report() {
            Some(r) => serde_json::to_value(r).unwrap_or(Value::Null),
            None => json!({"name": n.name(), "id": n.id()}),
        })
        .collect();
    json!({
        "ok": true,
        "node": {"name": k.node.name, "id": k.node.id, "pid": std::process::id()},
        "warnings": warnings,
        "networks": networks,
        "tasks": tasks,
    })
}
