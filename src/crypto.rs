//! Token generation, digests, constant-time comparison and password hashing.
//!
//! Tokens, codes and client secrets are 256-bit values from the OS CSPRNG,
//! base64url-encoded behind a readable prefix. Only their SHA-256 digest is
//! ever stored. bcrypt is reserved for human passwords.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a generated secret is for; decides its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    AccessToken,
    RefreshToken,
    AuthorizationCode,
    ClientSecret,
    AdminSession,
    CreatorSession,
    Csrf,
    Invite,
    /// A tenant API key (`kak_`).
    ApiKey,
    /// A delegated sign-in's login challenge (`klc_`), sent to the login service.
    LoginChallenge,
    /// A decided login request's verifier (`klv_`), in the browser's return URL.
    LoginVerifier,
    /// The cookie binding login requests to one browser (`kbr_`).
    Browser,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "kat_",
            TokenKind::RefreshToken => "krt_",
            TokenKind::AuthorizationCode => "kac_",
            TokenKind::ClientSecret => "kcs_",
            TokenKind::AdminSession => "kas_",
            TokenKind::CreatorSession => "kus_",
            TokenKind::Csrf => "kcf_",
            TokenKind::Invite => "kin_",
            TokenKind::ApiKey => "kak_",
            TokenKind::LoginChallenge => "klc_",
            TokenKind::LoginVerifier => "klv_",
            TokenKind::Browser => "kbr_",
        }
    }
}

/// Length of every generated secret: prefix (4) + 43 base64url characters.
pub const TOKEN_LEN: usize = 47;

/// Characters of a secret kept as its display hint: the prefix and four more.
const HINT_LEN: usize = 8;

/// A freshly generated secret: the value to hand out once, and what to store.
pub struct NewSecret {
    pub value: String,
    pub digest: Vec<u8>,
    pub hint: String,
}

/// 256 random bits from the operating system, base64url without padding.
pub fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn generate(kind: TokenKind) -> NewSecret {
    let value = format!("{}{}", kind.prefix(), random_b64(32));
    let digest = digest(&value);
    let hint = hint(&value);
    NewSecret {
        value,
        digest,
        hint,
    }
}

/// The stored, non-secret hint of a secret: its prefix and first characters.
pub fn hint(value: &str) -> String {
    value.chars().take(HINT_LEN).collect()
}

pub fn digest(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// True when `value` has the shape of a token of `kind`; cheap pre-check
/// that keeps garbage and overlong input away from the database.
pub fn looks_like(kind: TokenKind, value: &str) -> bool {
    value.len() == TOKEN_LEN
        && value.starts_with(kind.prefix())
        && value[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 §4.1: a `code_verifier` is 43 to 128 characters of
/// `[A-Za-z0-9-._~]`.
pub fn valid_pkce_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.2: an S256 `code_challenge` is BASE64URL(SHA256(verifier))
/// without padding: exactly 43 characters of `[A-Za-z0-9-_]`. (A verifier's
/// syntax is wider; a challenge that only passes that check could never
/// be met.)
pub fn valid_pkce_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// The S256 challenge a verifier meets.
pub fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 S256: BASE64URL(SHA256(verifier)) == challenge, compared in constant time.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    ct_eq(pkce_s256(verifier).as_bytes(), challenge.as_bytes())
}

pub fn hash_password(password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
    bcrypt::hash(password, cost)
}

/// Checks a password against a bcrypt hash. A malformed hash counts as a mismatch.
pub fn verify_password(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// Spends the same time as a real check, for accounts that do not exist, so
/// that timing does not reveal which emails have accounts.
pub fn verify_password_dummy(password: &str, cost: u32) {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    // One dummy hash per cost actually in use, made on first need (hashing
    // every cost up front took seconds at the first unknown-account sign-in).
    static DUMMY: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    let hashes = DUMMY.get_or_init(|| Mutex::new(HashMap::new()));
    let hash = match hashes.lock() {
        Ok(mut map) => match map.get(&cost) {
            Some(h) => Some(h.clone()),
            None => bcrypt::hash("kitauth-dummy-password", cost)
                .ok()
                .inspect(|h| {
                    map.insert(cost, h.clone());
                }),
        },
        Err(_) => None,
    };
    match hash {
        Some(h) => {
            let _ = bcrypt::verify(password, &h);
        }
        // Out-of-range cost or a poisoned lock: still spend a real bcrypt.
        None => {
            let _ = bcrypt::hash(password, cost.clamp(4, 31));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_prefix_length_and_digest() {
        let t = generate(TokenKind::AccessToken);
        assert!(t.value.starts_with("kat_"));
        assert_eq!(t.value.len(), TOKEN_LEN);
        assert!(looks_like(TokenKind::AccessToken, &t.value));
        assert!(!looks_like(TokenKind::RefreshToken, &t.value));
        assert_eq!(t.digest, digest(&t.value));
        assert_eq!(t.hint.len(), 8);
        assert_ne!(generate(TokenKind::AccessToken).value, t.value);
    }

    #[test]
    fn pkce_s256_vector_from_rfc7636() {
        assert!(pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn pkce_challenge_syntax_is_its_own() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(valid_pkce_challenge(challenge));
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            challenge
        );
        // Valid verifiers, but no S256 challenge looks like them.
        for c in [
            "a".repeat(44),
            "a".repeat(128),
            format!("{}~", "a".repeat(42)),
        ] {
            assert!(valid_pkce_verifier(&c), "{c}");
            assert!(!valid_pkce_challenge(&c), "{c}");
        }
        assert!(!valid_pkce_challenge(&"a".repeat(42)));
        assert!(!valid_pkce_challenge(&format!("{}=", "a".repeat(42))));
    }

    #[test]
    fn ct_eq_checks_length_and_content() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
