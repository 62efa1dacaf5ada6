//! `rtpm user`: manage the users file (argon2id hashes only).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use rtpm::Permissions;
use rtpm::security::{Permission, UsersFile};

use super::{BAD_INPUT, NO, OK};

/// The flags of this subcommand (its help text is on the `Command` variant).
#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    action: UserAction,
}

#[derive(Subcommand, Debug)]
enum UserAction {
    /// Add a user: prompts for the passphrase (twice, without echo) and stores only its
    /// argon2id hash. When standard input is not a terminal, the passphrase is its first
    /// line.
    Add(AddArgs),
    /// Remove a user.
    Remove(RemoveArgs),
    /// List the users and their grants (never the hashes).
    List(ListArgs),
}

#[derive(Args, Debug)]
struct AddArgs {
    /// The user's name: 1–64 letters, digits, `.`, `_`, `-`, `@`.
    name: String,
    /// The users file; created if missing.
    #[arg(long, value_name = "FILE", default_value = "users.toml")]
    users: PathBuf,
    /// A grant, TARGET=PERM[,PERM…]: TARGET is `*`, a service name, `topic:NAME` or a
    /// UUID; PERM is execute, publish, subscribe or admin. Repeat for several targets.
    #[arg(long, value_name = "TARGET=PERMS")]
    grant: Vec<String>,
    /// Replace an existing user's passphrase and grants.
    #[arg(long)]
    replace: bool,
}

#[derive(Args, Debug)]
struct RemoveArgs {
    /// The user's name.
    name: String,
    /// The users file.
    #[arg(long, value_name = "FILE", default_value = "users.toml")]
    users: PathBuf,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// The users file.
    #[arg(long, value_name = "FILE", default_value = "users.toml")]
    users: PathBuf,
}

/// Runs `rtpm user`.
pub fn run(args: UserArgs) -> u8 {
    match args.action {
        UserAction::Add(a) => add(a),
        UserAction::Remove(a) => remove(a),
        UserAction::List(a) => list(a),
    }
}

fn bad(message: impl std::fmt::Display) -> u8 {
    eprintln!("rtpm user: {message}");
    BAD_INPUT
}

fn load_or_new(path: &std::path::Path) -> Result<UsersFile, u8> {
    if path.exists() {
        UsersFile::load(path).map_err(bad)
    } else {
        Ok(UsersFile::new())
    }
}

fn parse_grant(g: &str) -> Result<(String, Permissions), String> {
    let (target, perms) = g.split_once('=').ok_or_else(|| {
        format!("--grant `{g}`: expected TARGET=PERM[,PERM…], e.g. --grant example.ping=execute")
    })?;
    if target.is_empty() {
        return Err(format!(
            "--grant `{g}`: the target is empty; use `*`, a service name, topic:NAME or a UUID"
        ));
    }
    let mut set = Permissions::NONE;
    for p in perms.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p: Permission = p.parse().map_err(|e| format!("--grant `{g}`: {e}"))?;
        set = set.with(p);
    }
    if set.is_empty() {
        return Err(format!("--grant `{g}`: no permission given"));
    }
    Ok((target.to_string(), set))
}

/// The passphrase: prompted twice without echo on a terminal, else stdin's first line.
fn passphrase(name: &str) -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("passphrase for {name}: "))
            .map_err(|e| format!("cannot read the passphrase from the terminal: {e}"))?;
        let second = rpassword::prompt_password("again: ")
            .map_err(|e| format!("cannot read the passphrase from the terminal: {e}"))?;
        if first != second {
            return Err("the two passphrases differ; nothing was written".into());
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the passphrase from standard input: {e}"))?;
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    }
}

fn add(a: AddArgs) -> u8 {
    if let Err(e) = rtpm::security::check_user_name(&a.name) {
        return bad(e);
    }
    let mut grants = BTreeMap::new();
    for g in &a.grant {
        match parse_grant(g) {
            Ok((t, p)) => {
                let merged = grants
                    .get(&t)
                    .copied()
                    .unwrap_or(Permissions::NONE)
                    .union(p);
                grants.insert(t, merged);
            }
            Err(e) => return bad(e),
        }
    }
    let mut file = match load_or_new(&a.users) {
        Ok(f) => f,
        Err(code) => return code,
    };
    if file.users().contains_key(&a.name) && !a.replace {
        return bad(format!(
            "user `{}` already exists in {}; pass --replace to set a new passphrase and grants",
            a.name,
            a.users.display()
        ));
    }
    let pass = match passphrase(&a.name) {
        Ok(p) if p.is_empty() => return bad("the passphrase is empty; nothing was written"),
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    eprintln!("hashing the passphrase with argon2id…");
    if let Err(e) = file.add_user(&a.name, &pass, grants.clone(), a.replace) {
        return bad(e);
    }
    if let Err(e) = file.save(&a.users) {
        eprintln!("rtpm user: {e}");
        return NO;
    }
    let shown: Vec<String> = grants.iter().map(|(t, p)| format!("{t}={p}")).collect();
    println!(
        "{} user `{}` in {} (argon2id hash only); grants: {}",
        if a.replace { "set" } else { "added" },
        a.name,
        a.users.display(),
        if shown.is_empty() {
            "none (add some with --grant TARGET=PERMS)".to_string()
        } else {
            shown.join(" ")
        }
    );
    OK
}

fn remove(a: RemoveArgs) -> u8 {
    let mut file = match UsersFile::load(&a.users) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    if !file.remove_user(&a.name) {
        return bad(format!("no user `{}` in {}", a.name, a.users.display()));
    }
    if let Err(e) = file.save(&a.users) {
        eprintln!("rtpm user: {e}");
        return NO;
    }
    println!("removed user `{}` from {}", a.name, a.users.display());
    OK
}

fn list(a: ListArgs) -> u8 {
    let file = match UsersFile::load(&a.users) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    for (name, u) in file.users() {
        let shown: Vec<String> = u.grants.iter().map(|(t, p)| format!("{t}={p}")).collect();
        println!(
            "{name}: {}",
            if shown.is_empty() {
                "no grants".into()
            } else {
                shown.join(" ")
            }
        );
    }
    OK
}
