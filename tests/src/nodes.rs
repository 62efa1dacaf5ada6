//! `rtpm node` processes for tests: their config folders and their control sockets.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One node of one overlay, as a test describes it.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// The node's name (its id is v5 of it).
    pub name: String,
    /// The control SAP's address (class 1 is at port + 1).
    pub ip: Ipv4Addr,
    /// The control SAP's port.
    pub port: u16,
    /// The overlay's bootstrap group.
    pub group: SocketAddrV4,
    /// The overlay key, 64 hex digits.
    pub key: String,
    /// Heartbeat, e.g. "25ms".
    pub heartbeat: String,
    /// Super-peers per cell.
    pub cell_size: usize,
    /// Peers per super-peer before a cell splits.
    pub peers_per_super_peer: Option<usize>,
    /// Seeds (control SAP addresses).
    pub seeds: Vec<String>,
}

impl NodeSpec {
    /// A node `name` at `ip:7000` in group `group`, key `key`, 25 ms heartbeat, k = 3.
    pub fn new(name: &str, ip: Ipv4Addr, group: SocketAddrV4, key: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            ip,
            port: 7000,
            group,
            key: key.into(),
            heartbeat: "25ms".into(),
            cell_size: 3,
            peers_per_super_peer: None,
            seeds: Vec::new(),
        }
    }

    /// Writes `root/NAME/` (node.toml, overlay.key, cores/) and returns the folder. The
    /// control socket is `root/NAME/ctl.sock`.
    pub fn write(&self, root: &Path) -> PathBuf {
        let dir = root.join(&self.name);
        let _ = std::fs::create_dir_all(dir.join("cores"));
        let cpus = allowed_cpus();
        for (i, c) in cpus.iter().enumerate() {
            let role = if i + 1 == cpus.len() && cpus.len() > 1 {
                "rt"
            } else {
                "general"
            };
            let _ = std::fs::write(
                dir.join("cores").join(format!("cpu{c}.toml")),
                format!("role = \"{role}\"\n"),
            );
        }
        let _ = std::fs::write(dir.join("overlay.key"), &self.key);
        let seeds: Vec<String> = self.seeds.iter().map(|s| format!("\"{s}\"")).collect();
        let pps = self
            .peers_per_super_peer
            .map_or(String::new(), |p| format!("peers_per_super_peer = {p}\n"));
        let text = format!(
            r#"[node]
name = "{name}"
log = "info"
control = "ctl.sock"

[[overlay]]
name = "test"
multicast = "{group}"
interface = "{ip}"
seeds = [{seeds}]
key = "overlay.key"
heartbeat = "{hb}"
cell_size = {k}
{pps}
[[overlay.sap]]
address = "{ip}:{port}"
class = 0
min_interarrival = "500us"

[[overlay.sap]]
address = "{ip}:{port1}"
class = 1
reliability = "reliable"
min_interarrival = "500us"
"#,
            name = self.name,
            group = self.group,
            ip = self.ip,
            seeds = seeds.join(", "),
            hb = self.heartbeat,
            k = self.cell_size,
            port = self.port,
            port1 = self.port + 1,
        );
        let _ = std::fs::write(dir.join("node.toml"), text);
        dir
    }
}

/// The CPUs this process may use (from /proc/self/status).
pub fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("0")
        .trim()
        .to_string();
    let mut v = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    v.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    v.push(a);
                }
            }
        }
    }
    v
}

/// Sends one request to a node's control socket and returns its answer (`ok` checked).
pub fn ask(socket: &Path, request: &str) -> Result<Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    writeln!(s, "{request}").map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
    if v["ok"] == Value::Bool(true) {
        Ok(v)
    } else {
        Err(v["error"].as_str().unwrap_or("refused").to_string())
    }
}

/// The first network of a node's status, if it answers.
pub fn network(socket: &Path) -> Option<Value> {
    ask(socket, r#"{"cmd":"status"}"#)
        .ok()
        .map(|v| v["networks"][0].clone())
}

/// Polls `f` every 10 ms until it holds or `timeout` passes; the time it took.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A folder under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `TMP/rtpm-TAG-PID`, fresh.
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("rtpm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::create_dir_all(&d);
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends SIGTERM to `pid` (with kill(1): no unsafe code in the test library).
pub fn sigterm(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
