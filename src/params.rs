//! The token, revoke and introspect request body: Kit sends JSON under a
//! form content type, so the body is sniffed, never routed on its header.
//!
//! `parse_body` is a pure function (the fuzz target calls it directly).

use std::collections::HashMap;

use rocket::data::{Data, ToByteUnit};

/// Largest body the OAuth endpoints read.
pub const MAX_BODY: usize = 16 * 1024;
/// Largest single value accepted (tokens are 47 bytes; URIs are the longest).
pub const MAX_VALUE: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    NotUtf8,
    NotObject,
    Malformed(String),
    WrongType(String),
    Duplicate(String),
    ValueTooLong(String),
    /// Refused by the input layer (`crate::input`): NUL, control character, length.
    Input(crate::input::InputError),
}

impl BodyError {
    pub fn description(&self) -> String {
        match self {
            BodyError::TooLarge => format!("the request body is larger than {} bytes", MAX_BODY),
            BodyError::NotUtf8 => "the request body is not valid UTF-8".into(),
            BodyError::NotObject => "the JSON body must be an object".into(),
            BodyError::Malformed(why) => {
                format!("the request body is neither a JSON object nor form-urlencoded: {why}")
            }
            BodyError::WrongType(f) => format!("the field {f:?} must be a string"),
            BodyError::Duplicate(f) => format!("the field {f:?} appears more than once"),
            BodyError::ValueTooLong(f) => format!("the field {f:?} is too long"),
            BodyError::Input(e) => e.description(),
        }
    }
}

/// The parameters of one request, each present at most once.
#[derive(Debug, Default, Clone)]
pub struct Params {
    map: HashMap<String, String>,
}

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    /// Adds one parameter; the input layer decides whether its name and
    /// value are acceptable text, so every body reader refuses NULs and
    /// control characters before any database work.
    pub fn insert(&mut self, key: String, value: String) -> Result<(), BodyError> {
        crate::input::check_name(&key).map_err(BodyError::Input)?;
        crate::input::check(&key, &value).map_err(BodyError::Input)?;
        if value.len() > MAX_VALUE && !crate::input::rule(&key).multiline {
            return Err(BodyError::ValueTooLong(truncate(&key)));
        }
        if self.map.contains_key(&key) {
            return Err(BodyError::Duplicate(truncate(&key)));
        }
        self.map.insert(key, value);
        Ok(())
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn truncate(key: &str) -> String {
    key.chars().take(40).collect()
}

/// Reads at most `MAX_BODY` bytes of the request body.
pub async fn read_body(data: Data<'_>) -> Result<Vec<u8>, BodyError> {
    let capped = data
        .open((MAX_BODY + 1).bytes())
        .into_bytes()
        .await
        .map_err(|_| BodyError::Malformed("the body could not be read".into()))?;
    if !capped.is_complete() || capped.len() > MAX_BODY {
        return Err(BodyError::TooLarge);
    }
    Ok(capped.into_inner())
}

/// Sniffs and parses a body: a JSON object first, else form-urlencoded,
/// whatever the Content-Type says. An empty body gives empty parameters.
pub fn parse_body(bytes: &[u8]) -> Result<Params, BodyError> {
    if bytes.len() > MAX_BODY {
        return Err(BodyError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| BodyError::NotUtf8)?;
    let trimmed = text.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\u{feff}');
    if trimmed.is_empty() {
        return Ok(Params::default());
    }
    if trimmed.starts_with('{') {
        return parse_json_object(trimmed);
    }
    // Any other JSON value (array, string, number, literal) is refused
    // rather than misread as a form key.
    if serde_json::from_str::<serde_json::Value>(trimmed).is_ok() {
        return Err(BodyError::NotObject);
    }
    parse_form(trimmed)
}

fn parse_json_object(text: &str) -> Result<Params, BodyError> {
    // Deserialise as a list of pairs so that duplicate keys are seen, not
    // silently overwritten as a map would.
    let pairs: JsonPairs = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            BodyError::NotObject
        } else {
            BodyError::Malformed("invalid JSON".into())
        }
    })?;
    let mut params = Params::default();
    for (key, value) in pairs.0 {
        match value {
            serde_json::Value::String(s) => params.insert(key, s)?,
            serde_json::Value::Null => {
                if params.map.contains_key(&key) {
                    return Err(BodyError::Duplicate(truncate(&key)));
                }
            }
            _ => return Err(BodyError::WrongType(truncate(&key))),
        }
    }
    Ok(params)
}

struct JsonPairs(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonPairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonPairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonPairs, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    if out.len() >= 64 {
                        return Err(serde::de::Error::custom("too many fields"));
                    }
                    out.push((k, v));
                }
                Ok(JsonPairs(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn parse_form(text: &str) -> Result<Params, BodyError> {
    let mut params = Params::default();
    for (i, pair) in text.trim_end().split('&').enumerate() {
        if pair.is_empty() {
            continue;
        }
        if i >= 64 {
            return Err(BodyError::Malformed("too many fields".into()));
        }
        let Some((raw_key, raw_value)) = pair.split_once('=') else {
            return Err(BodyError::Malformed("a field has no '='".into()));
        };
        let key = percent_decode(raw_key)?;
        let value = percent_decode(raw_value)?;
        if key.is_empty() || key.chars().any(|c| c.is_control()) {
            return Err(BodyError::Malformed(
                "a field has an empty or invalid name".into(),
            ));
        }
        params.insert(key, value)?;
    }
    if params.is_empty() {
        return Err(BodyError::Malformed("no fields".into()));
    }
    Ok(params)
}

/// application/x-www-form-urlencoded decoding that refuses bad escapes and
/// invalid UTF-8 instead of replacing them.
fn percent_decode(s: &str) -> Result<String, BodyError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| BodyError::Malformed("bad percent-escape".into()))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| BodyError::NotUtf8)
}

/// Splits a scope parameter on spaces or commas (Kit may use either).
pub fn split_scopes(scope: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scope
        .split([' ', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_under_any_header_and_form_both_parse() {
        let p = parse_body(br#"{"client_id":"a","grant_type":"refresh_token"}"#).unwrap();
        assert_eq!(p.get("client_id"), Some("a"));
        let p = parse_body(
            b"client_id=a&grant_type=refresh_token&redirect_uri=https%3A%2F%2Fapp.kit.com%2Fapps",
        )
        .unwrap();
        assert_eq!(p.get("redirect_uri"), Some("https://app.kit.com/apps"));
    }

    #[test]
    fn bad_bodies_are_refused() {
        let cases: &[(&[u8], BodyError)] = &[
            (b"[1,2]", BodyError::NotObject),
            (b"42", BodyError::NotObject),
            (b"\"str\"", BodyError::NotObject),
            (
                br#"{"client_id":5}"#,
                BodyError::WrongType("client_id".into()),
            ),
            (br#"{"a":"1","a":"2"}"#, BodyError::Duplicate("a".into())),
            (b"a=1&a=2", BodyError::Duplicate("a".into())),
            (b"\xff\xfe", BodyError::NotUtf8),
            (b"a=%ff", BodyError::NotUtf8),
            (
                b"hello world",
                BodyError::Malformed("a field has no '='".into()),
            ),
            (b"{not json", BodyError::Malformed("invalid JSON".into())),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_body(body).unwrap_err(),
                *want,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            parse_body(&vec![b'a'; MAX_BODY + 1]).unwrap_err(),
            BodyError::TooLarge
        );
    }

    #[test]
    fn scopes_split_on_space_and_comma() {
        assert_eq!(split_scopes("a b,c  a"), vec!["a", "b", "c"]);
    }
}
