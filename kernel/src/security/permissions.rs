//! Permissions: what a user may do on a service or topic.

use std::fmt;
use std::str::FromStr;

use crate::id::ServiceId;

/// One permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Invoke the service's operations (RPC).
    Execute,
    /// Publish on the topic.
    Publish,
    /// Subscribe to the topic.
    Subscribe,
    /// Insert, remove and administer the service; on the kernel ([`ServiceId::kernel`]
    /// or `*`): kernel services, networks and users.
    Admin,
}

impl Permission {
    /// Every permission, in file order.
    pub const ALL: [Permission; 4] = [
        Permission::Execute,
        Permission::Publish,
        Permission::Subscribe,
        Permission::Admin,
    ];

    fn bit(self) -> u8 {
        match self {
            Permission::Execute => 1,
            Permission::Publish => 2,
            Permission::Subscribe => 4,
            Permission::Admin => 8,
        }
    }

    /// The name used in files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Execute => "execute",
            Permission::Publish => "publish",
            Permission::Subscribe => "subscribe",
            Permission::Admin => "admin",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Permission, String> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown permission `{s}`; valid: execute, publish, subscribe, admin")
            })
    }
}

/// A set of permissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u8);

impl Permissions {
    /// Nothing.
    pub const NONE: Permissions = Permissions(0);
    /// Everything.
    pub const ALL: Permissions = Permissions(0b1111);

    /// Just `p`.
    pub fn only(p: Permission) -> Permissions {
        Permissions(p.bit())
    }

    /// These and `p`.
    #[must_use]
    pub fn with(self, p: Permission) -> Permissions {
        Permissions(self.0 | p.bit())
    }

    /// These and `other`.
    #[must_use]
    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// These without `other`.
    #[must_use]
    pub fn without(self, other: Permissions) -> Permissions {
        Permissions(self.0 & !other.0)
    }

    /// Whether `p` is in the set.
    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The permissions in the set, in file order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Permissions {
        iter.into_iter().fold(Permissions::NONE, Permissions::with)
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Permission::as_str).collect();
        write!(f, "[{}]", names.join(", "))
    }
}

/// What a grant applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Every service and topic (`*` in the users file).
    Any,
    /// One service or topic.
    Service(ServiceId),
}

impl Target {
    /// From a users-file key: `*`, a UUID, `topic:NAME`, or a service name.
    pub fn parse(key: &str) -> Target {
        if key == "*" {
            return Target::Any;
        }
        match uuid::Uuid::parse_str(key) {
            Ok(u) => Target::Service(ServiceId(u)),
            Err(_) => Target::Service(ServiceId::from_name(key)),
        }
    }
}

impl From<ServiceId> for Target {
    fn from(id: ServiceId) -> Target {
        Target::Service(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_combine_and_print() {
        let p = Permissions::only(Permission::Execute).with(Permission::Admin);
        assert!(p.contains(Permission::Execute) && p.contains(Permission::Admin));
        assert!(!p.contains(Permission::Publish));
        assert_eq!(p.to_string(), "[execute, admin]");
        assert_eq!(
            p.without(Permissions::only(Permission::Admin)).to_string(),
            "[execute]"
        );
        let all: Permissions = Permission::ALL.into_iter().collect();
        assert_eq!(all, Permissions::ALL);
        assert!(
            "exec"
                .parse::<Permission>()
                .unwrap_err()
                .contains("valid: execute")
        );
    }

    #[test]
    fn targets_parse_names_topics_uuids_and_the_wildcard() {
        assert_eq!(Target::parse("*"), Target::Any);
        assert_eq!(
            Target::parse("example.ping"),
            Target::Service(ServiceId::from_name("example.ping"))
        );
        assert_eq!(
            Target::parse("topic:pos"),
            Target::Service(ServiceId::topic("pos"))
        );
        let id = ServiceId::from_name("x");
        assert_eq!(Target::parse(&id.to_string()), Target::Service(id));
    }
}
