//! Passphrases are kept only as argon2id hashes (PHC strings, `$argon2id$v=19$m=…`).
//!
//! Hashing uses argon2's defaults (argon2id, version 19, m = 19 MiB, t = 2, p = 1: the
//! OWASP recommendation) with a fresh random salt. Verification takes the parameters
//! from the stored string, so a file written with stronger parameters keeps working.
//! Only argon2id is accepted: a file holding argon2i/argon2d (or anything else) is
//! refused when it is read.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Hashes `passphrase` with argon2id and a random salt; the PHC string.
pub fn hash(passphrase: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(passphrase.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("argon2id hashing failed: {e}"))
}

/// Checks that `phc` is an argon2id PHC string with a salt and a hash; the reason when it
/// is not.
pub fn check_argon2id(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| {
        format!("not a PHC hash string ({e}); expected `$argon2id$v=19$m=…,t=…,p=…$SALT$HASH` as written by `rtpm user add`")
    })?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "the hash uses `{}`; only argon2id is accepted (re-create the user with `rtpm user add`)",
            parsed.algorithm.as_str()
        ));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("the hash string has no salt or no hash value".into());
    }
    Ok(())
}

/// Whether `passphrase` matches the argon2id PHC string `phc`. A malformed string never
/// matches.
pub fn verify(passphrase: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) if h.algorithm.as_str() == "argon2id" => Argon2::default()
            .verify_password(passphrase.as_bytes(), &h)
            .is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_salted_and_verifies_only_its_passphrase() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "the salt must be random");
        assert!(!a.contains("correct horse"));
        assert!(check_argon2id(&a).is_ok());
        assert!(verify("correct horse", &a));
        assert!(!verify("correct horse!", &a));
        assert!(!verify("", &a));
    }

    #[test]
    fn other_algorithms_and_plain_text_are_refused() {
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$YmFkYmFkYmFkYmFkYmFkYmFk";
        assert!(check_argon2id(argon2i).unwrap_err().contains("argon2i"));
        assert!(check_argon2id("hunter2").is_err());
        assert!(!verify("hunter2", "hunter2"));
    }
}
