//! Network namespaces for multi-node tests: hosts on one bridge, links with `tc netem`.
//!
//! A [`Lan`] is a switch namespace holding a bridge, and one namespace per host whose
//! `eth0` is a veth pair plugged into the bridge, addressed `10.R.0.I/24`. Everything is
//! created by the test itself with `ip` and deleted by the guard's `Drop` — also when the
//! test panics — and every name carries this process's id and a counter, so concurrent or
//! crashed runs never collide (namespaces left by a process that no longer exists are
//! deleted first). Processes started in a host with [`Lan::spawn`] are `ip netns exec`'d
//! (which `exec`s the command itself, so the child's pid is the node's) and killed by the
//! guard if still running.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);
/// Every namespace this module makes starts with this.
const PREFIX: &str = "rtpmt";

/// `Ok` when this process can make namespaces, veth pairs and bridges: root, `ip`
/// present, and a throwaway namespace can be created and deleted.
pub fn available() -> Result<(), String> {
    super::probe::root()?;
    let out = Command::new("ip")
        .arg("-V")
        .output()
        .map_err(|e| format!("needs iproute2's `ip` ({e}); install iproute2"))?;
    if !out.status.success() {
        return Err("`ip -V` failed: needs iproute2".into());
    }
    let name = format!("{PREFIX}{}p", std::process::id());
    run(&["netns", "add", &name]).map_err(|e| format!("cannot create a network namespace: {e}"))?;
    let _ = run(&["netns", "del", &name]);
    Ok(())
}

/// How [`Lan::impair`] impaired a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impairment {
    /// `tc netem`: loss and delay, both directions.
    Netem,
    /// The kernel has no netem (`CONFIG_NET_SCH_NETEM`): loss only, by nftables
    /// (`numgen random`), both directions; no delay added.
    NftLossOnly,
}

/// `Ok` when a link can be made lossy: `tc` present (netem is probed when used; without
/// it, `nft` must be present).
pub fn impairment_available() -> Result<(), String> {
    let have = |p: &str| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
            || Command::new(p)
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success())
    };
    if have("tc") || have("nft") {
        Ok(())
    } else {
        Err("needs iproute2's `tc` (netem) or nftables' `nft` to make a link lossy; install iproute2 or nftables".into())
    }
}

/// Runs `ip ARGS`; the error carries its stderr.
pub fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn run_in(ns: &str, cmd: &[&str]) -> Result<(), String> {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(cmd);
    run(&args)
}

/// Deletes namespaces of ours whose process no longer exists (a run that was killed).
fn delete_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(pid) = pid.parse::<u32>()
            && pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = run(&["netns", "del", name]);
        }
    }
}

/// One LAN of hosts: see the [module documentation](self).
pub struct Lan {
    tag: String,
    subnet: u8,
    switch: String,
    hosts: Vec<String>,
    children: Vec<Child>,
}

impl Lan {
    /// A LAN of `n` hosts (at most 200): host `i` is `10.S.0.(i+1)` on its `eth0`.
    pub fn new(n: usize) -> Result<Lan, String> {
        delete_stale();
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{PREFIX}{pid}x{k}");
        let subnet = (100 + (pid + k * 7) % 150) as u8;
        let mut lan = Lan {
            switch: format!("{tag}s"),
            tag,
            subnet,
            hosts: Vec::new(),
            children: Vec::new(),
        };
        lan.build(n.min(200))?;
        Ok(lan)
    }

    fn build(&mut self, n: usize) -> Result<(), String> {
        let sw = self.switch.clone();
        run(&["netns", "add", &sw])?;
        run_in(&sw, &["ip", "link", "set", "lo", "up"])?;
        run_in(&sw, &["ip", "link", "add", "br0", "type", "bridge"])?;
        // flood multicast to every port: no IGMP querier runs on this bridge
        run_in(
            &sw,
            &[
                "ip",
                "link",
                "set",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        )?;
        run_in(&sw, &["ip", "link", "set", "br0", "up"])?;
        for i in 0..n {
            let host = format!("{}h{i}", self.tag);
            run(&["netns", "add", &host])?;
            self.hosts.push(host.clone());
            // created in the switch namespace; one end moves to the host
            let (inner, outer) = (format!("e{i}"), format!("p{i}"));
            run_in(
                &sw,
                &[
                    "ip", "link", "add", &inner, "type", "veth", "peer", "name", &outer,
                ],
            )?;
            run_in(&sw, &["ip", "link", "set", &inner, "netns", &host])?;
            run_in(&sw, &["ip", "link", "set", &outer, "master", "br0", "up"])?;
            run_in(&host, &["ip", "link", "set", &inner, "name", "eth0"])?;
            run_in(&host, &["ip", "link", "set", "lo", "up"])?;
            let addr = format!("{}/24", self.addr(i));
            run_in(&host, &["ip", "addr", "add", &addr, "dev", "eth0"])?;
            run_in(&host, &["ip", "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, (i + 1) as u8)
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Starts `program ARGS` in host `i`, its output to `log`. The guard kills it if it
    /// still runs when the LAN is dropped.
    pub fn spawn(
        &mut self,
        i: usize,
        program: &std::path::Path,
        args: &[&str],
        log: &std::path::Path,
    ) -> Result<u32, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.hosts[i]])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("ip netns exec {}: {e}", self.hosts[i]))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// The child with pid `pid`, to signal or wait for.
    pub fn child(&mut self, pid: u32) -> Option<&mut Child> {
        self.children.iter_mut().find(|c| c.id() == pid)
    }

    /// Makes host `i`'s link lose `loss_pct` % of the packets and delay them by
    /// `delay_ms`, both directions: `tc netem` on its `eth0` and on the bridge port facing
    /// it. A kernel without netem gets the loss from nftables instead (UDP in and out of
    /// the host), without the delay; the answer says which.
    pub fn impair(&self, i: usize, loss_pct: u32, delay_ms: u32) -> Result<Impairment, String> {
        let loss = format!("{loss_pct}%");
        let delay = format!("{delay_ms}ms");
        let netem = |ns: &str, dev: &str| {
            run_in(
                ns,
                &[
                    "tc", "qdisc", "add", "dev", dev, "root", "netem", "loss", &loss, "delay",
                    &delay,
                ],
            )
        };
        match netem(&self.hosts[i], "eth0") {
            Ok(()) => {
                netem(&self.switch, &format!("p{i}"))?;
                Ok(Impairment::Netem)
            }
            Err(e) if e.contains("qdisc kind is unknown") => {
                let h = &self.hosts[i];
                run_in(h, &["nft", "add", "table", "inet", "lossy"])?;
                for (chain, hook) in [("out", "output"), ("in", "input")] {
                    let spec = format!("{{ type filter hook {hook} priority 0; }}");
                    run_in(h, &["nft", "add", "chain", "inet", "lossy", chain, &spec])?;
                    let pct = loss_pct.to_string();
                    run_in(
                        h,
                        &[
                            "nft", "add", "rule", "inet", "lossy", chain, "meta", "l4proto", "udp",
                            "numgen", "random", "mod", "100", "<", &pct, "drop",
                        ],
                    )?;
                }
                Ok(Impairment::NftLossOnly)
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for c in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        // a namespace goes with its last process; its veth end goes with it
        for h in self.hosts.iter().chain(std::iter::once(&self.switch)) {
            let _ = run(&["netns", "del", h]);
        }
    }
}
