//! The demo's peers as child processes: their folders (node.toml, cores/, a key made
//! for this run, a multicast group and port picked for this run, SAPs on free ports),
//! spawning them (`rtpm demo-peer`, the same binary), reading their counters, killing
//! one, and stopping them all — on every exit path, since dropping the [`Cluster`]
//! stops whatever still runs.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rtpm::rt::cpu::CpuSet;

use super::peer::{PASSPHRASE_ENV, Role};
use super::records::Progress;
use super::scenario::Scenario;

/// `n` random bytes as hex, from the kernel's generator.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// One peer process.
#[derive(Debug)]
pub struct Peer {
    /// `p0`, `p1`, …
    pub name: String,
    /// Its folder in the output folder.
    pub dir: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// What it does.
    pub role: Role,
    /// Its vehicle number (vehicles).
    pub vehicle: u32,
    /// Its latest counters.
    pub progress: Arc<Mutex<Progress>>,
    /// Whether the demo killed it.
    pub killed: bool,
    child: Option<Child>,
}

impl Peer {
    /// Whether it has exited (without waiting).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    /// The last lines of its log, for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(3)..].join("\n    ")
    }

    /// Its latest counters.
    pub fn progress(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The peers of one run.
#[derive(Debug)]
pub struct Cluster {
    /// Peer 0 is the coordinator; the others are vehicles 1, 2, ….
    pub peers: Vec<Peer>,
    /// The overlay's bootstrap group, picked for this run.
    pub group: SocketAddrV4,
    sockets: PathBuf,
}

fn cores(dir: &Path) -> std::io::Result<()> {
    let cores = dir.join("cores");
    std::fs::create_dir_all(&cores)?;
    let allowed = CpuSet::allowed().map_err(std::io::Error::other)?;
    let last = allowed.last();
    for c in allowed.iter() {
        let role = if Some(c) == last && allowed.len() > 1 {
            "# reserved for admitted real-time work (the vehicle's 100 Hz task, the overlay's tasks)\nrole = \"rt\"\nscheduler = \"fp\"\n"
        } else {
            "role = \"general\"\n"
        };
        std::fs::write(cores.join(format!("cpu{c}.toml")), role)?;
    }
    Ok(())
}

fn node_toml(name: &str, group: SocketAddrV4, socket: &Path, s: &Scenario) -> String {
    format!(
        r#"# Written by `rtpm demo` for this run.
[node]
name = "{name}"
log = "info"
control = "{socket}"

[[service]]
kind = "rpc"

[[service]]                    # seven peers share one RT core: the DEADLINE monitor runs
kind = "events"                # every 5 ms rather than every 1 ms (the promise is 15 ms)
monitor_period = "5ms"

[[overlay]]
name = "city"
multicast = "{group}"          # picked for this run, on the loopback interface
interface = "127.0.0.1"
key = "../overlay.key"         # made for this run
cell_size = {k}
peers_per_super_peer = {pps}
heartbeat = "{hb}"

# Each SAP's receive task and the command (send) task are sporadic: a job every
# {mi} at most, {batch} datagrams each (the default 1 ms would add up to 4 ms to
# an RPC round trip: send, receive, reply, receive).
[overlay.commands]
min_interarrival = "{mi}"
batch = {batch}

[[overlay.sap]]                # class 0: control traffic, positions (best effort)
address = "127.0.0.1:0"
class = 0
min_interarrival = "{mi}"
batch = {batch}

[[overlay.sap]]                # class 1: reliable (RPC requests and replies)
address = "127.0.0.1:0"
class = 1
reliability = "reliable"
min_interarrival = "{mi}"
batch = {batch}
"#,
        mi = s.io_interarrival,
        batch = s.io_batch,
        socket = socket.display(),
        k = s.cell_size,
        pps = s.peers_per_super_peer,
        hb = s.heartbeat,
    )
}

/// A free UDP port on loopback (bound and released).
fn free_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl Cluster {
    /// Writes the folders of `scenario.peers` peers under `out/peers/` (and the key at
    /// `out/peers/overlay.key`); the control sockets go to a short folder under the temp
    /// dir (a Unix socket path must stay under 108 bytes).
    pub fn prepare(out: &Path, scenario: &Scenario) -> std::io::Result<Cluster> {
        let root = out.join("peers");
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("overlay.key"), random_hex(32)? + "\n")?;
        let r = random_hex(2)?;
        let (a, b) = (
            u8::from_str_radix(&r[..2], 16).unwrap_or(77),
            u8::from_str_radix(&r[2..], 16).unwrap_or(7),
        );
        let group = SocketAddrV4::new(Ipv4Addr::new(239, 255, a, b.max(1)), free_port()?);
        let sockets = std::env::temp_dir().join(format!("rtpm-demo-{}", std::process::id()));
        std::fs::create_dir_all(&sockets)?;
        let mut peers = Vec::new();
        for i in 0..scenario.peers {
            let name = format!("p{i}");
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir)?;
            cores(&dir)?;
            let socket = sockets.join(format!("{name}.sock"));
            std::fs::write(
                dir.join("node.toml"),
                node_toml(&format!("demo-{name}"), group, &socket, scenario),
            )?;
            peers.push(Peer {
                name,
                dir,
                socket,
                role: if i == 0 {
                    Role::Coordinator
                } else {
                    Role::Vehicle
                },
                vehicle: i as u32,
                progress: Arc::new(Mutex::new(Progress::default())),
                killed: false,
                child: None,
            });
        }
        Ok(Cluster {
            peers,
            group,
            sockets,
        })
    }

    /// Starts peer `i` as `exe demo-peer …`: standard error to its folder's `log`, its
    /// counters read from its standard output by a thread, in a process group of its
    /// own (a Ctrl-C reaches the demo, which stops it in order).
    pub fn spawn(
        &mut self,
        i: usize,
        exe: &Path,
        passphrase: &str,
        lock_memory: bool,
    ) -> std::io::Result<()> {
        let n = self.peers.len();
        let p = &mut self.peers[i];
        let log = std::fs::File::create(p.dir.join("log"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("demo-peer")
            .arg("--config")
            .arg(&p.dir)
            .arg("--role")
            .arg(match p.role {
                Role::Coordinator => "coordinator",
                Role::Vehicle => "vehicle",
            })
            .arg("--vehicle")
            .arg(p.vehicle.to_string())
            .arg("--vehicles")
            .arg((n - 1).to_string())
            .env(PASSPHRASE_ENV, passphrase)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0);
        if lock_memory {
            cmd.arg("--lock-memory");
        }
        let mut child = cmd.spawn()?;
        if let Some(out) = child.stdout.take() {
            let progress = Arc::clone(&p.progress);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Progress>(&line) {
                        *progress
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = v;
                    }
                }
            });
        }
        p.child = Some(child);
        Ok(())
    }

    /// The process ids of the peers started and not yet reaped.
    pub fn pids(&self) -> Vec<u32> {
        self.peers
            .iter()
            .filter_map(|p| p.child.as_ref().map(Child::id))
            .collect()
    }

    /// SIGKILLs peer `i` (no goodbye: a crash). Reaped later, in [`Cluster::stop_all`]:
    /// a process whose real-time threads are starved on the RT core can take long to
    /// finish dying, and the demo does not wait for it here.
    pub fn kill(&mut self, i: usize) -> std::io::Result<()> {
        let p = &mut self.peers[i];
        if let Some(c) = p.child.as_mut() {
            c.kill()?;
            p.killed = true;
        }
        Ok(())
    }

    /// SIGTERMs every peer still running, waits up to `grace` for them to leave the
    /// overlay and exit, then SIGKILLs the rest and waits up to 2 s more. Returns what
    /// had to be forced, by peer: a process that is still not gone then (its threads
    /// starved on the RT core by other processes' real-time threads, say) is left to
    /// finish dying on its own, and said so.
    pub fn stop_all(&mut self, grace: Duration) -> Vec<String> {
        for p in &mut self.peers {
            if let Some(c) = p.child.as_mut()
                && c.try_wait().ok().flatten().is_none()
                && let Ok(pid) = i32::try_from(c.id())
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let reap = |peers: &mut [Peer], until: Instant| {
            loop {
                let mut left = 0;
                for p in peers.iter_mut() {
                    if let Some(c) = p.child.as_mut() {
                        if c.try_wait().ok().flatten().is_some() {
                            p.child = None;
                        } else {
                            left += 1;
                        }
                    }
                }
                if left == 0 || Instant::now() >= until {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        reap(&mut self.peers, Instant::now() + grace);
        let mut forced = Vec::new();
        for p in &mut self.peers {
            if let Some(c) = p.child.as_mut() {
                let _ = c.kill();
                forced.push(format!(
                    "{} did not exit within {} ms of SIGTERM and was killed",
                    p.name,
                    grace.as_millis()
                ));
            }
        }
        reap(&mut self.peers, Instant::now() + Duration::from_secs(2));
        for p in &mut self.peers {
            if p.child.take().is_some() {
                forced.push(format!(
                    "{} has not finished exiting 2 s after SIGKILL (its threads wait for the RT core); it is left to finish on its own",
                    p.name
                ));
            }
        }
        // the readers see EOF now; give them a moment to take the final lines
        std::thread::sleep(Duration::from_millis(50));
        forced
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop_all(Duration::from_secs(3));
        let _ = std::fs::remove_dir_all(&self.sockets);
    }
}
