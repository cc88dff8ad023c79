//! Redaction of every log line, whatever the filter: kitauth's events,
//! Rocket's `log` records (bridged into tracing) and hyper's all reach the
//! one writer (`logwriter`), which passes each line through [`redact`]
//! before it is buffered. So a credential in a URI (an invite link, a
//! `code=` in a Location), a header (`Authorization`, `Cookie`,
//! `Set-Cookie`) or a cookie value never reaches the output, at
//! `KITAUTH_LOG=trace`, with `RUST_LOG` or `ROCKET_LOG_LEVEL` set, or not.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::bytes::Regex;

struct Patterns {
    /// kitauth's prefixed tokens: `kat_`, `krt_`, `kac_`, `kcs_`, `kas_`,
    /// `kus_`, `kcf_`, `kin_`, `kak_`… The prefix is kept, so a reader
    /// still sees what kind of credential it was.
    token: Regex,
    /// Credential-bearing headers, in any of the shapes a logger prints
    /// them (`Authorization: …`, `"authorization": "…"`, JSON-escaped).
    header: Regex,
    /// Cookie values: `kitauth_admin=…`, `kitauth_csrf=…`, …
    cookie: Regex,
    /// Credential-bearing query or form parameters.
    param: Regex,
}

fn patterns() -> Option<&'static Patterns> {
    static P: OnceLock<Option<Patterns>> = OnceLock::new();
    P.get_or_init(|| {
        Some(Patterns {
            token: Regex::new(r"\b(k[a-z]{2}_)[A-Za-z0-9_\-]{6,}").ok()?,
            header: Regex::new(
                r#"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-csrf-token)((?:\\?")?\s*[:=]\s*(?:\\?")?)[^"\\\r\n]+"#,
            )
            .ok()?,
            cookie: Regex::new(r"(kitauth_[A-Za-z0-9_]+=)[^;,&\s\x22\\]+").ok()?,
            param: Regex::new(
                r"(?i)\b((?:code|token|client_secret|password|csrf_token|refresh_token|access_token|code_verifier|secret|invite|login_challenge|login_verifier)=)[^&\s\x22\\;]+",
            )
            .ok()?,
        })
    })
    .as_ref()
}

const MASK: &[u8] = b"[redacted]";

/// `line` with every credential-looking value replaced by `[redacted]`.
/// Borrowed when nothing matched (the common case: no allocation).
pub fn redact(line: &[u8]) -> Cow<'_, [u8]> {
    let Some(p) = patterns() else {
        // Patterns are constants; should one ever fail to build, drop the
        // line rather than risk a secret.
        return Cow::Borrowed(b"[log line withheld: redaction unavailable]\n");
    };
    let mut out: Cow<'_, [u8]> = Cow::Borrowed(line);
    for (re, keep_group) in [(&p.header, true), (&p.cookie, true), (&p.param, true)] {
        if re.is_match(&out) {
            let replaced = re
                .replace_all(&out, |c: &regex::bytes::Captures<'_>| {
                    let mut v = Vec::new();
                    if keep_group {
                        for i in 1..c.len() {
                            if let Some(m) = c.get(i) {
                                v.extend_from_slice(m.as_bytes());
                            }
                        }
                    }
                    v.extend_from_slice(MASK);
                    v
                })
                .into_owned();
            out = Cow::Owned(replaced);
        }
    }
    if p.token.is_match(&out) {
        let replaced = p
            .token
            .replace_all(&out, |c: &regex::bytes::Captures<'_>| {
                let mut v = c.get(1).map(|m| m.as_bytes().to_vec()).unwrap_or_default();
                v.extend_from_slice(MASK);
                v
            })
            .into_owned();
        out = Cow::Owned(replaced);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        String::from_utf8(redact(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn credentials_are_masked_in_every_shape() {
        let tok = format!("kat_{}", "a1B2".repeat(10));
        assert_eq!(r(&format!("Bearer {tok}")), "Bearer kat_[redacted]");
        assert!(!r(&format!("GET /admin/invite/kin_{}", "x".repeat(43))).contains("xxxxxx"));
        // Delegated sign-in: the challenge in the API's path and the login
        // page's URL, the verifier in the return URL, the binding cookie.
        for kind in ["klc_", "klv_", "kbr_"] {
            let v = format!("{kind}{}", "Zq9_".repeat(10));
            assert_eq!(
                r(&format!("POST /t/acme/api/v1/login-requests/{v}/accept")),
                format!("POST /t/acme/api/v1/login-requests/{kind}[redacted]/accept")
            );
        }
        assert_eq!(
            r("Location: https://login.example/kit?login_challenge=abcdefgh"),
            "Location: https://login.example/kit?login_challenge=[redacted]"
        );
        assert!(!r("cookie kitauth_browser=kbr_secretvalue1").contains("secretvalue1"));
        assert_eq!(
            r(r#"{"authorization": "Basic dXNlcjpwYXNz"}"#),
            r#"{"authorization": "[redacted]"}"#
        );
        assert_eq!(
            r(r#"\"cookie\": \"kitauth_admin=abc; kitauth_csrf=def\""#),
            r#"\"cookie\": \"[redacted]\""#
        );
        assert_eq!(
            r("Set-Cookie: kitauth_csrf=abcdef; Path=/"),
            "Set-Cookie: [redacted]"
        );
        assert_eq!(
            r("x kitauth_csrf=abcdef; y"),
            "x kitauth_csrf=[redacted]; y"
        );
        assert_eq!(
            r("location: https://app.kit.com/apps/install?code=zzz&state=s"),
            "location: https://app.kit.com/apps/install?code=[redacted]&state=s"
        );
        assert!(matches!(redact(b"request status=200\n"), Cow::Borrowed(_)));
    }
}
