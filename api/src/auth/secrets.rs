//! Keys, session tokens, password hashes and the session cookie: the pure parts of access
//! control, unit-tested here.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every API key starts with this, so leaked keys are easy to find by secret scanners.
pub const KEY_PREFIX: &str = "vak_";
/// Hex characters of a key's public prefix.
const PREFIX_HEX_LEN: usize = 12;
/// Shortest secret part accepted (a generated one has 43 characters, 256 bits).
const MIN_SECRET_LEN: usize = 32;
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "va_session";
/// Shortest password accepted for a user.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted: Argon2 hashes any length, but an unbounded one is free work for
/// an attacker.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A parsed `vak_<prefix>_<secret>` key.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    /// The public part, the key's id.
    pub prefix: &'a str,
    /// The whole key, to hash.
    pub whole: &'a str,
}

/// Parses an API key's shape (not whether it exists).
pub fn parse_key(raw: &str) -> Option<ParsedKey<'_>> {
    let rest = raw.strip_prefix(KEY_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    let prefix_ok = prefix.len() == PREFIX_HEX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let secret_ok = secret.len() >= MIN_SECRET_LEN
        && secret.len() <= 256
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (prefix_ok && secret_ok).then_some(ParsedKey { prefix, whole: raw })
}

/// A new random API key: `vak_` + 12 hex + `_` + 43 base64url characters.
pub fn generate_key() -> String {
    let mut prefix = [0u8; PREFIX_HEX_LEN / 2];
    rand::rng().fill_bytes(&mut prefix);
    format!("{KEY_PREFIX}{}_{}", hex::encode(prefix), random_token())
}

/// 256 random bits, base64url: session tokens and CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Lower-case hex SHA-256. Enough for 256-bit random keys and tokens: there is nothing to
/// guess, so a slow hash would only slow every request.
pub fn digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Constant-time equality of two strings (digests, CSRF tokens).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// An Argon2id PHC string (the crate's defaults: 19 MiB, 2 passes, 1 lane, OWASP's minimum).
/// CPU-heavy: call from `spawn_blocking`.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt = SaltString::encode_b64(&bytes)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the PHC string. CPU-heavy: call from `spawn_blocking`.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash of a password nobody has, verified when the email is unknown so that an unknown
/// email costs as long as a wrong password and does not reveal which emails exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        hash_password(&random_token()).expect("hashing a random password succeeds")
    });
    &DUMMY
}

/// `Set-Cookie` for a new session. `Secure` only over HTTPS, since browsers drop Secure
/// cookies set over plain HTTP on anything but localhost.
pub fn session_cookie(token: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}"
    )
}

/// `Set-Cookie` that deletes the session cookie.
pub fn cleared_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}

/// The session token from a `Cookie` header's value(s).
pub fn session_from_cookies<'a>(headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_its_prefix_is_the_id() {
        let key = generate_key();
        let parsed = parse_key(&key).expect("a generated key parses");
        assert_eq!(parsed.whole, key);
        assert_eq!(parsed.prefix.len(), 12);
        assert!(key.starts_with(&format!("vak_{}_", parsed.prefix)));
        assert_ne!(generate_key(), key);
    }

    #[test]
    fn malformed_keys_are_refused() {
        let secret = "a".repeat(43);
        for bad in [
            String::new(),
            "Bearer".to_owned(),
            format!("vak_0123456789ab{secret}"),
            format!("vak_0123456789AB_{secret}"),
            format!("vak_0123456789a_{secret}"),
            "vak_0123456789ab_short".to_owned(),
            format!("xyz_0123456789ab_{secret}"),
            format!("vak_0123456789ab_{secret}!"),
        ] {
            assert_eq!(parse_key(&bad), None, "{bad}");
        }
        assert!(parse_key(&format!("vak_0123456789ab_{secret}")).is_some());
    }

    #[test]
    fn digests_are_hex_sha256_and_compared_in_full() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same(&digest("abc"), &digest("abc")));
        assert!(!same(&digest("abc"), &digest("abd")));
        assert!(!same("abc", "ab"));
    }

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let phc = hash_password("correct horse battery").expect("hashes");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterY", &phc));
        assert!(!verify_password("anything", "not a phc string"));
    }

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_only_over_https() {
        let plain = session_cookie("tok", 3600, false);
        assert_eq!(
            plain,
            "va_session=tok; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict"
        );
        assert!(session_cookie("tok", 3600, true).ends_with("; Secure"));
        assert!(cleared_cookie(false).contains("va_session=; Path=/; Max-Age=0"));
    }

    #[test]
    fn the_session_token_is_found_among_other_cookies() {
        let headers = ["theme=dark; va_session=abc", "other=1"];
        assert_eq!(session_from_cookies(headers.into_iter()), Some("abc"));
        assert_eq!(session_from_cookies(["va_session="].into_iter()), None);
        assert_eq!(session_from_cookies(["xva_session=abc"].into_iter()), None);
    }
}
