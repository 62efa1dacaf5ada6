//! The users file: who may log in (argon2id hashes only) and what each may do.
//!
//! ```toml
//! # rtpm users: argon2id hashes only (written by `rtpm user add`)
//! [users.alice]
//! hash = "$argon2id$v=19$m=19456,t=2,p=1$…$…"
//! grants = { "*" = ["admin"] }
//!
//! [users.bob]
//! hash = "$argon2id$v=19$m=19456,t=2,p=1$…$…"
//! grants = { "example.ping" = ["execute"], "topic:positions" = ["subscribe"] }
//! ```
//!
//! A grant's key is `*` (everything), a service name, `topic:NAME`, or a UUID. Reading
//! is all-or-nothing: an unknown key, a hash that is not argon2id, or an unknown
//! permission is an error naming the file and the key, and nothing is loaded. Writing
//! goes through a temporary file and a rename, with mode 0600.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::passphrase;
use super::permissions::{Permission, Permissions};
use crate::error::{Error, Result};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    #[serde(default)]
    users: BTreeMap<String, UserRepr>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRepr {
    hash: String,
    #[serde(default)]
    grants: BTreeMap<String, Vec<String>>,
}

/// One user as the file holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEntry {
    /// The argon2id PHC string of the passphrase (invariant: checked argon2id).
    pub hash: String,
    /// Grants by target key (`*`, a service name, `topic:NAME` or a UUID).
    pub grants: BTreeMap<String, Permissions>,
}

/// The users file, loaded and validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsersFile {
    users: BTreeMap<String, UserEntry>,
}

/// Checks a user name: 1–64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_user_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid user name `{name}`: use 1–64 characters among letters, digits, `.`, `_`, `-`, `@`"
        ))
    }
}

impl UsersFile {
    /// An empty file.
    pub fn new() -> UsersFile {
        UsersFile::default()
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<UsersFile> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::File {
            path: path.to_path_buf(),
            source,
        })?;
        UsersFile::parse(path, &text)
    }

    /// Validates `text`, naming `path` in errors.
    pub fn parse(path: &Path, text: &str) -> Result<UsersFile> {
        let repr: FileRepr = toml::from_str(text).map_err(|e| Error::Config {
            file: path.to_path_buf(),
            key: None,
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let mut users = BTreeMap::new();
        for (name, u) in repr.users {
            let key = |k: &str| format!("users.{name}.{k}");
            check_user_name(&name).map_err(|m| Error::config(path, format!("users.{name}"), m))?;
            passphrase::check_argon2id(&u.hash).map_err(|m| Error::config(path, key("hash"), m))?;
            let mut grants = BTreeMap::new();
            for (target, perms) in u.grants {
                let mut set = Permissions::NONE;
                for p in perms {
                    let p: Permission = p.parse().map_err(|m: String| {
                        Error::config(path, key(&format!("grants.\"{target}\"")), m)
                    })?;
                    set = set.with(p);
                }
                grants.insert(target, set);
            }
            users.insert(
                name,
                UserEntry {
                    hash: u.hash,
                    grants,
                },
            );
        }
        Ok(UsersFile { users })
    }

    /// The users, by name.
    pub fn users(&self) -> &BTreeMap<String, UserEntry> {
        &self.users
    }

    /// Adds user `name` with `passphrase` (hashed here with argon2id; the passphrase is
    /// not kept) and `grants`. Refused if the user exists, unless `replace`.
    pub fn add_user(
        &mut self,
        name: &str,
        passphrase: &str,
        grants: BTreeMap<String, Permissions>,
        replace: bool,
    ) -> Result<()> {
        check_user_name(name).map_err(Error::Invalid)?;
        if passphrase.is_empty() {
            return Err(Error::Invalid(format!(
                "user `{name}`: the passphrase is empty; give one of at least one character"
            )));
        }
        if self.users.contains_key(name) && !replace {
            return Err(Error::Invalid(format!(
                "user `{name}` already exists; pass --replace to set a new passphrase and grants"
            )));
        }
        let hash = passphrase::hash(passphrase).map_err(Error::Invalid)?;
        self.users
            .insert(name.to_string(), UserEntry { hash, grants });
        Ok(())
    }

    /// Inserts an already validated entry (the kernel's in-memory users).
    pub(crate) fn insert_entry(&mut self, name: String, entry: UserEntry) {
        self.users.insert(name, entry);
    }

    /// Removes user `name`; whether it was there.
    pub fn remove_user(&mut self, name: &str) -> bool {
        self.users.remove(name).is_some()
    }

    /// The file's text.
    pub fn to_toml(&self) -> Result<String> {
        let repr = FileRepr {
            users: self
                .users
                .iter()
                .map(|(n, u)| {
                    (
                        n.clone(),
                        UserRepr {
                            hash: u.hash.clone(),
                            grants: u
                                .grants
                                .iter()
                                .map(|(t, p)| {
                                    (
                                        t.clone(),
                                        p.iter().map(|p| p.as_str().to_string()).collect(),
                                    )
                                })
                                .collect(),
                        },
                    )
                })
                .collect(),
        };
        let body = toml::to_string(&repr)
            .map_err(|e| Error::Invalid(format!("users file could not be written as TOML: {e}")))?;
        Ok(format!(
            "# rtpm users: argon2id hashes only (written by `rtpm user add`)\n{body}"
        ))
    }

    /// Writes the file atomically (temporary file, then rename) with mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let text = self.to_toml()?;
        let tmp = temp_beside(path);
        let file_err = |source| Error::File {
            path: tmp.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(file_err)?;
        f.write_all(text.as_bytes()).map_err(file_err)?;
        f.sync_all().map_err(file_err)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|source| Error::File {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn temp_beside(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_file_reads_back_and_holds_no_passphrase() {
        let dir = std::env::temp_dir().join(format!("rtpm-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.toml");
        let mut f = UsersFile::new();
        let mut grants = BTreeMap::new();
        grants.insert(
            "example.ping".to_string(),
            Permissions::only(Permission::Execute),
        );
        f.add_user("bob", "s3cret passphrase", grants, false)
            .unwrap();
        assert!(f.add_user("bob", "x", BTreeMap::new(), false).is_err());
        f.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("$argon2id$"), "{text}");
        let back = UsersFile::load(&path).unwrap();
        assert_eq!(back, f);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let p = Path::new("/etc/rtpm/users.toml");
        let bad_hash = "[users.eve]\nhash = \"plaintext\"\n";
        let e = UsersFile::parse(p, bad_hash).unwrap_err().to_string();
        assert!(
            e.starts_with("/etc/rtpm/users.toml: key `users.eve.hash`"),
            "{e}"
        );
        let good = passphrase::hash("x").unwrap();
        let bad_perm =
            format!("[users.eve]\nhash = \"{good}\"\ngrants = {{ \"*\" = [\"root\"] }}\n");
        let e = UsersFile::parse(p, &bad_perm).unwrap_err().to_string();
        assert!(
            e.contains("key `users.eve.grants.\"*\"`") && e.contains("unknown permission `root`"),
            "{e}"
        );
        let unknown = format!("[users.eve]\nhash = \"{good}\"\npassword = \"x\"\n");
        let e = UsersFile::parse(p, &unknown).unwrap_err().to_string();
        assert!(
            e.contains("/etc/rtpm/users.toml") && e.contains("password"),
            "{e}"
        );
        let e = UsersFile::parse(p, &format!("[users.\"a b\"]\nhash = \"{good}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid user name"), "{e}");
    }
}
