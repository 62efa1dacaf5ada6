//! The kernel's security module (the seed's `KernelSecurity`, listing 3): users, their
//! passphrases (argon2id hashes only), their permissions per (user, service id), logins
//! with throttling, and sessions.
//!
//! A permission check unions the user's grants on the service itself and on `*`. Every
//! change to users or grants bumps a generation number, so holders of a cached decision
//! (an RPC client, a publisher) re-check with one atomic load per request and take the
//! lock only after a change.
//!
//! Administration (adding users, granting, revoking, removing) needs `admin` on the
//! kernel ([`ServiceId::kernel`], or `*`).

mod passphrase;
mod permissions;
mod throttle;
mod users_file;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};

use rtpm_rt::time::Clock;

pub use passphrase::{check_argon2id, hash as hash_passphrase};
pub use permissions::{Permission, Permissions, Target};
pub use throttle::LoginPolicy;
pub use users_file::{UserEntry, UsersFile, check_user_name};

use crate::error::{Error, Result};
use crate::id::ServiceId;
use crate::session::{Session, SessionInner};
use throttle::Throttle;

/// A user's record: the hash and the grants, in file form and parsed.
#[derive(Clone, Debug)]
struct UserRecord {
    entry: UserEntry,
    grants: BTreeMap<Target, Permissions>,
}

impl UserRecord {
    fn new(entry: UserEntry) -> UserRecord {
        let mut grants = BTreeMap::new();
        for (key, p) in &entry.grants {
            let t = Target::parse(key);
            let merged = grants
                .get(&t)
                .copied()
                .unwrap_or(Permissions::NONE)
                .union(*p);
            grants.insert(t, merged);
        }
        UserRecord { entry, grants }
    }

    fn permissions(&self, service: ServiceId) -> Permissions {
        let any = self.grants.get(&Target::Any).copied().unwrap_or_default();
        let own = self
            .grants
            .get(&Target::Service(service))
            .copied()
            .unwrap_or_default();
        any.union(own)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks is left consistent between statements.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The security module. See the [module documentation](self).
pub struct KernelSecurity {
    runtime: u64,
    users: RwLock<BTreeMap<String, UserRecord>>,
    generation: AtomicU64,
    throttle: Mutex<Throttle>,
    clock: Arc<dyn Clock>,
    sessions: Mutex<Vec<Weak<SessionInner>>>,
    next_session: AtomicU64,
    /// A hash verified for unknown users, so a login takes as long for them.
    dummy: OnceLock<String>,
    /// Where [`KernelSecurity::save`] writes.
    file: Option<PathBuf>,
}

impl std::fmt::Debug for KernelSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelSecurity")
            .field("users", &self.user_names())
            .field("generation", &self.generation())
            .finish()
    }
}

impl KernelSecurity {
    pub(crate) fn new(
        runtime: u64,
        users: UsersFile,
        file: Option<PathBuf>,
        policy: LoginPolicy,
        clock: Arc<dyn Clock>,
    ) -> KernelSecurity {
        let users = users
            .users()
            .iter()
            .map(|(n, e)| (n.clone(), UserRecord::new(e.clone())))
            .collect();
        KernelSecurity {
            runtime,
            users: RwLock::new(users),
            generation: AtomicU64::new(1),
            throttle: Mutex::new(Throttle::new(policy)),
            clock,
            sessions: Mutex::new(Vec::new()),
            next_session: AtomicU64::new(1),
            dummy: OnceLock::new(),
            file,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, UserRecord>> {
        self.users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, UserRecord>> {
        self.users
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Bumped by every change to users or grants.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The user names.
    pub fn user_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Checks `passphrase` for `user` (throttled) and opens a session.
    pub(crate) fn login(&self, user: &str, passphrase: &str) -> Result<Session> {
        let now = self.clock.now();
        lock(&self.throttle)
            .begin(user, now)
            .map_err(|w| Error::Throttled {
                user: user.to_string(),
                failures: w.failures,
                retry_after: w.retry_after,
            })?;
        let hash = self.read().get(user).map(|r| r.entry.hash.clone());
        let ok = match hash {
            Some(h) => passphrase::verify(passphrase, &h),
            None => {
                // Same work as for a known user, then refuse.
                let dummy = self
                    .dummy
                    .get_or_init(|| passphrase::hash("rtpm-unknown-user").unwrap_or_default());
                let _ = passphrase::verify(passphrase, dummy);
                false
            }
        };
        if !ok {
            tracing::warn!(user, "login refused");
            return Err(Error::LoginFailed {
                user: user.to_string(),
            });
        }
        lock(&self.throttle).succeeded(user);
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let session = Session::new(id, Arc::from(user), self.runtime);
        let mut sessions = lock(&self.sessions);
        sessions.retain(|w| w.strong_count() > 0);
        sessions.push(Arc::downgrade(&session.inner));
        tracing::info!(user, session = id, "logged in");
        Ok(session)
    }

    /// Failed logins counted for `user` (reset by a successful one).
    pub fn failed_logins(&self, user: &str) -> u32 {
        lock(&self.throttle).failures(user)
    }

    /// Closes `session` (and every clone of it).
    pub(crate) fn logout(&self, session: &Session) -> Result<()> {
        self.active(session)?;
        session.close();
        tracing::info!(user = session.user(), "logged out");
        Ok(())
    }

    /// `Ok` when `session` is open and was issued by this runtime.
    #[inline]
    pub(crate) fn active(&self, session: &Session) -> Result<()> {
        if session.valid_for(self.runtime) {
            Ok(())
        } else {
            Err(Error::SessionClosed {
                user: session.user().to_string(),
            })
        }
    }

    /// The permissions of `user` on `service` (its own grants and those on `*`).
    pub fn permissions(&self, user: &str, service: ServiceId) -> Permissions {
        self.read()
            .get(user)
            .map_or(Permissions::NONE, |r| r.permissions(service))
    }

    /// `Ok` when `session` is open and its user holds `permission` on `service`;
    /// `target` names the service in the error.
    pub fn check(
        &self,
        session: &Session,
        service: ServiceId,
        permission: Permission,
        target: &str,
    ) -> Result<()> {
        self.active(session)?;
        if self
            .permissions(session.user(), service)
            .contains(permission)
        {
            Ok(())
        } else {
            Err(Error::NotAllowed {
                user: session.user().to_string(),
                permission,
                target: target.to_string(),
            })
        }
    }

    fn require_admin(&self, session: &Session) -> Result<()> {
        self.check(
            session,
            ServiceId::kernel(),
            Permission::Admin,
            "the kernel",
        )
    }

    /// Adds user `name` (listing 3's `addUser`): the passphrase is hashed with argon2id
    /// here and not kept. `grants` are `(target, permissions)` with targets as in the
    /// users file (`*`, a service name, `topic:NAME`, a UUID). Needs `admin` on the kernel.
    pub fn add_user(
        &self,
        admin: &Session,
        name: &str,
        passphrase: &str,
        grants: &[(&str, Permissions)],
    ) -> Result<()> {
        self.require_admin(admin)?;
        let mut file = UsersFile::new();
        let grants: BTreeMap<String, Permissions> =
            grants.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        file.add_user(name, passphrase, grants, false)?;
        let mut users = self.write();
        if users.contains_key(name) {
            return Err(Error::Invalid(format!("user `{name}` already exists")));
        }
        for (n, e) in file.users() {
            users.insert(n.clone(), UserRecord::new(e.clone()));
        }
        drop(users);
        self.changed();
        Ok(())
    }

    /// Grants `permissions` on `target` (users-file form) to `user`. Needs `admin` on the
    /// kernel.
    pub fn grant(
        &self,
        admin: &Session,
        user: &str,
        target: &str,
        permissions: Permissions,
    ) -> Result<()> {
        self.require_admin(admin)?;
        self.edit_grants(user, target, |p| p.union(permissions))
    }

    /// Takes `permissions` on `target` away from `user` (listing 3's
    /// `removeUserPermissions`). Needs `admin` on the kernel.
    pub fn revoke(
        &self,
        admin: &Session,
        user: &str,
        target: &str,
        permissions: Permissions,
    ) -> Result<()> {
        self.require_admin(admin)?;
        self.edit_grants(user, target, |p| p.without(permissions))
    }

    fn edit_grants(
        &self,
        user: &str,
        target: &str,
        f: impl Fn(Permissions) -> Permissions,
    ) -> Result<()> {
        let mut users = self.write();
        let r = users
            .get_mut(user)
            .ok_or_else(|| Error::Invalid(format!("no user `{user}`")))?;
        let mut entry = r.entry.clone();
        let now = f(entry.grants.get(target).copied().unwrap_or_default());
        if now.is_empty() {
            entry.grants.remove(target);
        } else {
            entry.grants.insert(target.to_string(), now);
        }
        *r = UserRecord::new(entry);
        drop(users);
        self.changed();
        Ok(())
    }

    /// Removes `user` and closes its sessions. Needs `admin` on the kernel.
    pub fn remove_user(&self, admin: &Session, user: &str) -> Result<()> {
        self.require_admin(admin)?;
        if self.write().remove(user).is_none() {
            return Err(Error::Invalid(format!("no user `{user}`")));
        }
        self.changed();
        for s in lock(&self.sessions).iter().filter_map(Weak::upgrade) {
            if &*s.user == user {
                s.active.store(false, Ordering::Release);
            }
        }
        Ok(())
    }

    /// The users and grants as a users file.
    pub fn to_users_file(&self) -> UsersFile {
        let mut f = UsersFile::new();
        for (n, r) in self.read().iter() {
            f.insert_entry(n.clone(), r.entry.clone());
        }
        f
    }

    /// Writes the users and grants back to the users file the runtime was started with.
    /// Needs `admin` on the kernel.
    pub fn save(&self, admin: &Session) -> Result<()> {
        self.require_admin(admin)?;
        let path = self.file.as_ref().ok_or_else(|| {
            Error::Invalid(
                "this runtime was started without a users file; there is nowhere to save".into(),
            )
        })?;
        self.to_users_file().save(path)
    }
}
