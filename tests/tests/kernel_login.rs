//! Logins: a good passphrase opens a session, a bad one or an unknown user is refused
//! without saying which, failed logins are throttled with an exponential back-off (driven
//! by a simulated clock) and reset by a success, a logged-out session is refused
//! everywhere, and a session of another runtime is not accepted.
//!
//! Every test starts a runtime (its executor needs SCHED_FIFO and two CPUs) and skips
//! with the reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod exec_common;
mod kernel_common;

use kernel_common::*;
use rtpm::rt::time::Nanos;
use rtpm::{Error, Permission, Permissions, ServiceId};
use rtpm_tests::skip_unless;

#[test]
fn good_and_bad_passphrases() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = runtime_with_clock(sim_clock());
    let s = rt.login("alice", "alice passphrase").unwrap();
    assert_eq!(s.user(), "alice");
    assert!(s.is_active());
    let bad = rt.login("alice", "alice passphrase ").unwrap_err();
    assert!(
        matches!(bad, Error::LoginFailed { ref user } if user == "alice"),
        "{bad}"
    );
    let unknown = rt.login("mallory", "alice passphrase").unwrap_err();
    // The same message for an unknown user as for a wrong passphrase.
    assert_eq!(
        unknown.to_string().replace("mallory", "alice"),
        bad.to_string()
    );
    assert!(!bad.to_string().contains("passphrase "), "{bad}");
    // The session works, then not after logout (for every clone).
    let clone = s.clone();
    assert!(
        rt.services(&s)
            .unwrap()
            .iter()
            .any(|i| i.name == "rtpm.rpc")
    );
    rt.logout(&s).unwrap();
    assert!(!clone.is_active());
    assert!(matches!(
        rt.services(&clone),
        Err(Error::SessionClosed { .. })
    ));
    assert!(matches!(rt.rpc(&clone), Err(Error::SessionClosed { .. })));
    assert!(rt.logout(&s).is_err());
}

#[test]
fn failed_logins_are_throttled_with_exponential_back_off() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let clock = sim_clock();
    let rt = runtime_with_clock(std::sync::Arc::clone(&clock));
    for _ in 0..3 {
        assert!(matches!(
            rt.login("bob", "guess"),
            Err(Error::LoginFailed { .. })
        ));
    }
    assert_eq!(rt.security().failed_logins("bob"), 3);
    // The fourth attempt, even with the right passphrase, is not checked for 1 s.
    match rt.login("bob", "bob passphrase") {
        Err(Error::Throttled {
            failures,
            retry_after,
            ..
        }) => {
            assert_eq!(failures, 3);
            assert_eq!(retry_after, Nanos::secs(1));
        }
        other => panic!("expected throttling, got {other:?}"),
    }
    // Other users are not affected.
    rt.login("alice", "alice passphrase").unwrap();
    clock.advance(Nanos::ms(999));
    assert!(matches!(
        rt.login("bob", "guess"),
        Err(Error::Throttled { .. })
    ));
    clock.advance(Nanos::ms(1));
    assert!(matches!(
        rt.login("bob", "guess"),
        Err(Error::LoginFailed { .. })
    ));
    // Four failures: 2 s now.
    clock.advance(Nanos::ms(1999));
    match rt.login("bob", "bob passphrase") {
        Err(Error::Throttled { retry_after, .. }) => assert_eq!(retry_after, Nanos::ms(1)),
        other => panic!("expected throttling, got {other:?}"),
    }
    clock.advance(Nanos::ms(1));
    let s = rt.login("bob", "bob passphrase").unwrap();
    assert_eq!(
        rt.security().failed_logins("bob"),
        0,
        "a success resets the count"
    );
    assert_eq!(s.user(), "bob");
    // Unknown names are throttled the same way.
    for _ in 0..3 {
        let _ = rt.login("nobody", "x");
    }
    assert!(matches!(
        rt.login("nobody", "x"),
        Err(Error::Throttled { .. })
    ));
}

#[test]
fn a_session_belongs_to_its_runtime_and_users_can_be_managed() {
    let _g = exclusive();
    skip_unless!(fifo_allowed());
    skip_unless!(two_cpus());
    let rt = runtime();
    let admin = rt.login("admin", "admin passphrase").unwrap();
    let alice = rt.login("alice", "alice passphrase").unwrap();
    // Administration needs admin on the kernel.
    let denied = rt
        .security()
        .add_user(&alice, "carol", "carol passphrase", &[])
        .unwrap_err();
    assert!(
        matches!(
            denied,
            Error::NotAllowed {
                permission: Permission::Admin,
                ..
            }
        ),
        "{denied}"
    );
    rt.security()
        .add_user(
            &admin,
            "carol",
            "carol passphrase",
            &[("example.ping", Permissions::only(Permission::Execute))],
        )
        .unwrap();
    let carol = rt.login("carol", "carol passphrase").unwrap();
    let ping = ServiceId::from_name("example.ping");
    assert!(
        rt.security()
            .permissions("carol", ping)
            .contains(Permission::Execute)
    );
    rt.security()
        .revoke(
            &admin,
            "carol",
            "example.ping",
            Permissions::only(Permission::Execute),
        )
        .unwrap();
    assert!(rt.security().permissions("carol", ping).is_empty());
    rt.security().remove_user(&admin, "carol").unwrap();
    assert!(!carol.is_active(), "removing a user closes its sessions");
    assert!(matches!(
        rt.login("carol", "carol passphrase"),
        Err(Error::LoginFailed { .. })
    ));
    drop(rt);
    // Another runtime does not accept this runtime's sessions.
    let other = runtime();
    assert!(matches!(
        other.services(&admin),
        Err(Error::SessionClosed { .. })
    ));
}
