//! A node's configuration: `DIR/node.toml` and the per-core files `DIR/cores/*.toml`.
//!
//! ```toml
//! [node]
//! name = "alpha"                 # required; the node id is v5 of it unless `id` is given
//! id = "6f0c…"                   # optional UUID
//! log = "info"                   # error | warn | info | debug | trace
//! users = "users.toml"           # the users file (argon2id hashes), relative to DIR
//! keys = ["overlay.key"]         # key files, relative to DIR; each must be readable
//!
//! [[service]]                    # the kernel services started with the node
//! kind = "rpc"
//!
//! [[service]]
//! kind = "events"
//! monitor_period = "1ms"         # how often the DEADLINE/liveliness monitor runs
//!
//! [[overlay]]                    # the overlays the node joins (none by default)
//! name = "city"
//! multicast = "239.77.0.1:7600"  # bootstrap group and port
//! seeds = []                     # control SAPs of other peers (networks without multicast)
//! key = "city.key"               # 64 hex digits, relative to DIR
//! cell_size = 3
//! heartbeat = "25ms"
//! [[overlay.sap]]                # one per QoS class; class 0 (control) is required
//! address = "127.0.0.1:7000"
//! class = 0
//! [[overlay.sap]]
//! address = "127.0.0.1:7001"     # class c listens on the control port + c
//! class = 1
//! reliability = "reliable"
//! ```
//!
//! The `[[overlay]]` schema is the overlay driver's
//! ([`rtpm_overlay::driver::OverlayConfig`]: every key, its default and its range). Each
//! section is checked here like the rest: its keys, its addresses (each fixed SAP address
//! is bound and released at once, so a taken or foreign address fails before anything is
//! bound for real) and its key file; an error names `overlay[i].KEY`.
//!
//! Without `[[service]]` entries, the node starts `rpc` and `events`. The cores come from
//! [`rtpm_rt::config::Partition`]. Validation is complete before anything starts: every
//! file is read and checked, unknown keys are refused, and each error names the file and
//! the key and says what is valid.

use std::path::{Path, PathBuf};

use rtpm_rt::config::Partition;
use rtpm_rt::time::Nanos;
use serde::Deserialize;

use rtpm_overlay::driver::OverlayConfig;
use rtpm_overlay::proto::security::OverlayKey;

use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::security::UsersFile;

/// `node.toml`, validated.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Identity, logging, users and keys.
    pub node: NodeSection,
    /// The services to start; `rpc` and `events` when absent.
    #[serde(default = "default_services", rename = "service")]
    pub services: Vec<ServiceEntry>,
    /// The overlays the node joins at start.
    #[serde(default)]
    pub overlay: Vec<OverlayConfig>,
    /// Each overlay's key, read from its key file by [`NodeConfig::parse`] (same order).
    #[serde(skip)]
    pub overlay_keys: Vec<OverlayKey>,
}

/// `[node]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The node's name.
    pub name: String,
    /// Its id; v5 of the name when absent.
    #[serde(default)]
    pub id: Option<uuid::Uuid>,
    /// The log level.
    #[serde(default)]
    pub log: LogLevel,
    /// The users file (relative paths are relative to the config directory).
    #[serde(default)]
    pub users: Option<PathBuf>,
    /// Key files (relative to the config directory).
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    /// The control socket `rtpm status` asks (a Unix socket path, relative to the config
    /// directory). Without it a runtime opens none; `rtpm node` then uses
    /// [`default_control_socket`].
    #[serde(default)]
    pub control: Option<PathBuf>,
}

impl NodeSection {
    /// The node id.
    pub fn node_id(&self) -> NodeId {
        self.id
            .map_or_else(|| NodeId::from_name(&self.name), NodeId)
    }
}

/// A log level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    #[default]
    Info,
    /// More.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level's name, as `tracing` filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// A `[[service]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// Which service.
    pub kind: ServiceKindName,
    /// The event service's monitor period (events only).
    #[serde(default)]
    pub monitor_period: Option<Nanos>,
}

/// The services a node can start from its config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKindName {
    /// The RPC kernel service.
    Rpc,
    /// The event service.
    Events,
}

fn default_services() -> Vec<ServiceEntry> {
    vec![
        ServiceEntry {
            kind: ServiceKindName::Rpc,
            monitor_period: None,
        },
        ServiceEntry {
            kind: ServiceKindName::Events,
            monitor_period: None,
        },
    ]
}

impl NodeConfig {
    /// The embedded default: node `rtpm`, log `info`, no users file, `rpc` and `events`.
    pub fn embedded() -> NodeConfig {
        NodeConfig {
            node: NodeSection {
                name: "rtpm".into(),
                id: None,
                log: LogLevel::Info,
                users: None,
                keys: Vec::new(),
                control: None,
            },
            services: default_services(),
            overlay: Vec::new(),
            overlay_keys: Vec::new(),
        }
    }

    /// The embedded default with one overlay on loopback: `rtpm node` without `--config`.
    /// The node is named `loopback-PID` (so several can run on one machine), its group is
    /// `239.255.77.1:7600` on `127.0.0.1`, its SAPs take free ports, and its key is
    /// [`LOOPBACK_KEY`] — public, for trying rtpm on one machine only.
    pub fn embedded_peer() -> Result<NodeConfig> {
        let mut c = NodeConfig::embedded();
        c.node.name = format!("loopback-{}", std::process::id());
        let ov: OverlayConfig = toml::from_str(
            r#"
name = "loopback"
multicast = "239.255.77.1:7600"
interface = "127.0.0.1"
key = "<embedded loopback key>"
[[sap]]
address = "127.0.0.1:0"
class = 0
[[sap]]
address = "127.0.0.1:0"
class = 1
reliability = "reliable"
"#,
        )
        .map_err(|e| Error::Invalid(format!("the embedded overlay does not parse: {e}")))?;
        let key = OverlayKey::from_hex(LOOPBACK_KEY)
            .map_err(|e| Error::Invalid(format!("the embedded loopback key: {e}")))?;
        c.overlay.push(ov);
        c.overlay_keys.push(key);
        Ok(c)
    }

    /// Parses and checks `text` as the file `file` in directory `dir` (relative paths
    /// resolve against `dir`; referenced files must be readable).
    pub fn parse(file: &Path, dir: &Path, text: &str) -> Result<NodeConfig> {
        let mut cfg: NodeConfig = toml::from_str(text).map_err(|e| {
            let key = e.span().and_then(|s| key_at(text, s.start));
            Error::Config {
                file: file.to_path_buf(),
                key,
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        if cfg.node.name.trim().is_empty() {
            return Err(Error::config(
                file,
                "node.name",
                "is empty; give the node a name",
            ));
        }
        if let Some(u) = cfg.node.users.as_mut() {
            *u = dir.join(&*u);
            if !u.is_file() {
                return Err(Error::config(
                    file,
                    "node.users",
                    format!(
                        "{} is not a readable file; create it with `rtpm user add NAME --users {}`",
                        u.display(),
                        u.display()
                    ),
                ));
            }
        }
        for (i, k) in cfg.node.keys.iter_mut().enumerate() {
            *k = dir.join(&*k);
            if let Err(e) = std::fs::File::open(&*k) {
                return Err(Error::config(
                    file,
                    format!("node.keys[{i}]"),
                    format!("{} cannot be read: {e}", k.display()),
                ));
            }
        }
        for (i, s) in cfg.services.iter().enumerate() {
            if cfg.services[..i].iter().any(|o| o.kind == s.kind) {
                return Err(Error::config(
                    file,
                    format!("service[{i}].kind"),
                    "this service is listed twice; list each kind once",
                ));
            }
            if s.kind != ServiceKindName::Events && s.monitor_period.is_some() {
                return Err(Error::config(
                    file,
                    format!("service[{i}].monitor_period"),
                    "only the `events` service has a monitor period",
                ));
            }
            if s.monitor_period.is_some_and(Nanos::is_zero) {
                return Err(Error::config(
                    file,
                    format!("service[{i}].monitor_period"),
                    "must be > 0, e.g. \"1ms\"",
                ));
            }
        }
        if let Some(c) = &mut cfg.node.control
            && c.is_relative()
        {
            *c = dir.join(&*c);
        }
        cfg.overlay_keys = check_overlays(file, dir, &cfg.overlay)?;
        Ok(cfg)
    }

    /// Binds and releases each overlay's fixed SAP addresses: a taken or foreign address
    /// fails here, naming `overlay[i].sap[j].address`, before anything starts.
    pub fn probe_addresses(&self, file: &Path) -> Result<()> {
        for (i, o) in self.overlay.iter().enumerate() {
            o.probe_addresses().map_err(|e| overlay_error(file, i, e))?;
        }
        Ok(())
    }

    /// Reads and checks `dir/node.toml`.
    pub fn load(dir: &Path) -> Result<NodeConfig> {
        let file = dir.join("node.toml");
        let text = std::fs::read_to_string(&file).map_err(|source| Error::File {
            path: file.clone(),
            source,
        })?;
        NodeConfig::parse(&file, dir, &text)
    }
}

/// Everything a runtime starts from, validated: the node, the partition, the users.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// `node.toml` (or the embedded default).
    pub node: NodeConfig,
    /// The cores.
    pub partition: Partition,
    /// The users file's content (empty without one).
    pub users: UsersFile,
    /// The config directory, if any.
    pub dir: Option<PathBuf>,
}

impl LoadedConfig {
    /// Reads and validates `dir/node.toml`, `dir/cores/*.toml` and the users file;
    /// nothing starts unless all of them are valid.
    pub fn load(dir: &Path) -> Result<LoadedConfig> {
        let node = NodeConfig::load(dir)?;
        node.probe_addresses(&dir.join("node.toml"))?;
        let partition = Partition::load(dir)?;
        let users = match &node.node.users {
            Some(p) => UsersFile::load(p)?,
            None => UsersFile::new(),
        };
        Ok(LoadedConfig {
            node,
            partition,
            users,
            dir: Some(dir.to_path_buf()),
        })
    }

    /// The embedded default: [`NodeConfig::embedded`] on the embedded partition.
    pub fn embedded() -> Result<LoadedConfig> {
        Ok(LoadedConfig {
            node: NodeConfig::embedded(),
            partition: Partition::embedded_default()?,
            users: UsersFile::new(),
            dir: None,
        })
    }
}

/// The key of the embedded loopback overlay ([`NodeConfig::embedded_peer`]). It is public:
/// anyone can join an overlay that uses it. Give real overlays a key file of their own
/// (`openssl rand -hex 32 > city.key`).
pub const LOOPBACK_KEY: &str = "7274706d206c6f6f706261636b206f7665726c6179206b65793a7075626c6963";

/// Where `rtpm node` puts its control socket when `node.control` is not set:
/// `/run/rtpm/NAME.sock` for root, else `$XDG_RUNTIME_DIR/rtpm/NAME.sock`, else
/// `/tmp/rtpm-UID/NAME.sock`.
pub fn default_control_socket(node: &str) -> PathBuf {
    control_dir().join(format!("{node}.sock"))
}

/// The folder [`default_control_socket`] puts sockets in (what `rtpm status` searches).
pub fn control_dir() -> PathBuf {
    let uid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    if uid == 0 {
        return PathBuf::from("/run/rtpm");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("rtpm"),
        _ => PathBuf::from(format!("/tmp/rtpm-{uid}")),
    }
}

/// Parses and checks one overlay section given as TOML text (the keys of an `[[overlay]]`
/// entry, its SAPs as `[[sap]]`): for overlays inserted at run time
/// ([`OverlaySpec`](crate::network::OverlaySpec)).
pub fn overlay_config(text: &str) -> Result<OverlayConfig> {
    let c: OverlayConfig = toml::from_str(text).map_err(|e| Error::Config {
        file: PathBuf::from("<overlay section>"),
        key: e.span().and_then(|s| key_at(text, s.start)),
        message: e.message().trim().replace('\n', " "),
    })?;
    c.validate().map_err(|e| match e {
        rtpm_overlay::Error::OverlayConfig { key, message, .. } => Error::Config {
            file: PathBuf::from("<overlay section>"),
            key: Some(key),
            message,
        },
        other => Error::Invalid(other.to_string()),
    })?;
    Ok(c)
}

/// An overlay driver error as a config error on `overlay[i]`.
fn overlay_error(file: &Path, i: usize, e: rtpm_overlay::Error) -> Error {
    match e {
        rtpm_overlay::Error::OverlayConfig { key, message, .. } => {
            Error::config(file, format!("overlay[{i}].{key}"), message)
        }
        other => Error::config(file, format!("overlay[{i}]"), other.to_string()),
    }
}

/// Checks every `[[overlay]]` section and reads its key; the keys, in order.
fn check_overlays(file: &Path, dir: &Path, overlays: &[OverlayConfig]) -> Result<Vec<OverlayKey>> {
    let mut keys = Vec::with_capacity(overlays.len());
    for (i, o) in overlays.iter().enumerate() {
        o.validate().map_err(|e| overlay_error(file, i, e))?;
        if overlays[..i].iter().any(|p| p.name == o.name) {
            return Err(Error::config(
                file,
                format!("overlay[{i}].name"),
                format!(
                    "overlay `{}` is listed twice: give each overlay its own name",
                    o.name
                ),
            ));
        }
        keys.push(
            o.load_key(Some(dir))
                .map_err(|e| overlay_error(file, i, e))?,
        );
    }
    Ok(keys)
}

/// The dotted key at byte `pos` of a TOML text: the key of that line, under the nearest
/// table header above it.
fn key_at(text: &str, pos: usize) -> Option<String> {
    let pos = pos.min(text.len());
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    if line.trim_start().starts_with('[') {
        // the error is about a table itself (a missing field of `[[overlay]]`, say)
        let name = line.trim().trim_matches(|c| c == '[' || c == ']').trim();
        return Some(name.to_string());
    }
    let key = line.split_once('=').map(|(k, _)| k.trim().to_string());
    let header = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match (header, key) {
        (Some(h), Some(k)) => Some(format!("{h}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(h), None) => Some(h),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig> {
        NodeConfig::parse(Path::new("/cfg/node.toml"), Path::new("/cfg"), text)
    }

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let c = parse("[node]\nname = \"alpha\"\n").unwrap();
        assert_eq!(c.node.node_id(), NodeId::from_name("alpha"));
        assert_eq!(c.node.log, LogLevel::Info);
        assert_eq!(c.services, default_services());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = parse("[node]\nname = \"a\"\ncolour = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/cfg/node.toml: key `node.colour`"), "{e}");
        let e = parse("[node]\nname = \"a\"\nlog = \"loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `node.log`") && e.contains("loud"), "{e}");
        let e = parse("[node]\nname = \"a\"\nusers = \"nope.toml\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key `node.users`") && e.contains("rtpm user add"),
            "{e}"
        );
        let e = parse("[node]\nname = \"a\"\nkeys = [\"k\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `node.keys[0]`"), "{e}");
        let e = parse(
            "[node]\nname = \"a\"\n[[service]]\nkind = \"rpc\"\n[[service]]\nkind = \"rpc\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key `service[1].kind`"), "{e}");
        let e = parse(
            "[node]\nname = \"a\"\n[[service]]\nkind = \"events\"\nmonitor_period = \"fast\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key `service.monitor_period`"), "{e}");
        let e = parse("[node]\nname = \"a\"\n[[overlay]]\nname = \"o\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key `overlay`") && e.contains("missing field"),
            "{e}"
        );
        let e = parse("[node]\nname = \"\"\n").unwrap_err().to_string();
        assert!(e.contains("key `node.name`"), "{e}");
    }
}
