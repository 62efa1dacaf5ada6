//! Starting from a config directory, and without an RT core.
//!
//! - `DIR/node.toml` + `DIR/cores/*.toml` + the users file it names start a runtime with
//!   that node name and those users; a bad `node.toml` (an unknown key, a missing users
//!   file, an overlay section this build cannot start) is refused with the file and the
//!   key, and nothing starts.
//! - A partition without an RT core (one CPU) still starts: login works, the services
//!   that need real-time tasks are refused with the reason, and the runtime says so.
//!   This half needs no privilege.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;

use std::collections::BTreeMap;

use exec_common::{exclusive, fifo_allowed, two_cpus};
use rtpm::config::{LoadedConfig, NodeConfig};
use rtpm::rpc::{OpError, ReplyBuf, Request, RpcServer, ServerSpec};
use rtpm::rt::config::Partition;
use rtpm::rt::cpu::CpuSet;
use rtpm::rt::time::Nanos;
use rtpm::security::UsersFile;
use rtpm::{Error, NodeId, Permissions, Runtime, ServiceKind};
use rtpm_tests::skip_unless;

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config_dir(tag: &str, node_toml: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!("rtpm-kernel-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("cores")).unwrap();
    let rt = CpuSet::allowed().unwrap().last().unwrap();
    std::fs::write(
        dir.join("cores").join(format!("cpu{rt}.toml")),
        "role = \"rt\"\nscheduler = \"edf\"\ndispatch = \"cooperative\"\n",
    )
    .unwrap();
    let mut users = UsersFile::new();
    let mut grants = BTreeMap::new();
    grants.insert("*".to_string(), Permissions::ALL);
    users
        .add_user("ops", "ops passphrase", grants, false)
        .unwrap();
    users.save(&dir.join("users.toml")).unwrap();
    std::fs::write(dir.join("overlay.key"), [7u8; 32]).unwrap();
    std::fs::write(dir.join("node.toml"), node_toml).unwrap();
    Dir(dir)
}

#[test]
fn a_runtime_starts_from_a_config_directory() {
    let dir = config_dir(
        "good",
        "[node]\nname = \"tram-7\"\nlog = \"debug\"\nusers = \"users.toml\"\nkeys = [\"overlay.key\"]\n\n[[service]]\nkind = \"rpc\"\n",
    );
    let loaded = LoadedConfig::load(&dir.0).unwrap();
    assert_eq!(loaded.node.node.name, "tram-7");
    assert_eq!(loaded.node.services.len(), 1);
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = Runtime::from_dir(&dir.0).unwrap();
    assert_eq!(rt.node(), ("tram-7", NodeId::from_name("tram-7")));
    assert_eq!(rt.log_level().as_str(), "debug");
    let s = rt.login("ops", "ops passphrase").unwrap();
    let services = rt.services(&s).unwrap();
    assert_eq!(services.len(), 1, "only rpc was asked for: {services:?}");
    assert_eq!(services[0].kind, ServiceKind::Kernel);
    assert!(matches!(rt.events(&s), Err(Error::ServiceNotFound { .. })));
}

#[test]
fn a_bad_node_file_is_refused_with_the_file_and_the_key() {
    for (tag, text, key) in [
        ("unknown", "[node]\nname = \"a\"\nspeed = 3\n", "node.speed"),
        (
            "users",
            "[node]\nname = \"a\"\nusers = \"missing.toml\"\n",
            "node.users",
        ),
        (
            "overlay",
            "[node]\nname = \"a\"\n[[overlay]]\nname = \"o\"\n",
            "overlay",
        ),
        (
            "service",
            "[node]\nname = \"a\"\n[[service]]\nkind = \"dns\"\n",
            "service.kind",
        ),
    ] {
        let dir = config_dir(tag, text);
        let e = Runtime::from_dir(&dir.0).unwrap_err().to_string();
        let file = dir.0.join("node.toml");
        assert!(
            e.starts_with(&format!("{}: key `{key}`", file.display())),
            "{tag}: {e}"
        );
        let e2 = NodeConfig::load(&dir.0).unwrap_err().to_string();
        assert_eq!(e, e2);
    }
}

struct Nop;
impl RpcServer for Nop {
    fn name(&self) -> &str {
        "example.nop"
    }
    fn invoke(&self, _: &Request<'_>, _: &mut ReplyBuf<'_>) -> Result<(), OpError> {
        Ok(())
    }
}

#[test]
fn without_an_rt_core_the_runtime_starts_and_says_what_it_cannot_do() {
    let one = CpuSet::single(CpuSet::allowed().unwrap().iter().next().unwrap());
    let rt = Runtime::builder()
        .partition(Partition::embedded_default_for(one).unwrap())
        .user("ops", "ops passphrase", &[("*", Permissions::ALL)])
        .build()
        .unwrap();
    let w = rt.warnings().join("\n");
    assert!(w.contains("no RT core"), "{w}");
    assert!(w.contains("Events") && w.contains("not started"), "{w}");
    let s = rt.login("ops", "ops passphrase").unwrap();
    let rpc = rt.rpc(&s).unwrap();
    let e = rpc
        .register_server(&s, Nop, ServerSpec::new(Nanos::ms(1), Nanos::us(10)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no executor") && e.contains("example.nop"),
        "{e}"
    );
}
