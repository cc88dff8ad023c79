//! A token request as its grant type says it must look, checked out of the
//! sniffed body (`params`) before any database work.

use crate::auth::SecretRequirement;
use crate::error::OAuthError;
use crate::params::Params;

/// `grant_type=authorization_code` (RFC 6749 §4.1.3).
#[derive(Debug, Clone)]
pub struct CodeRequest {
    pub code: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
}

/// `grant_type=refresh_token` (RFC 6749 §6).
#[derive(Debug, Clone)]
pub struct RefreshRequest {
    pub refresh_token: String,
    pub scope: Option<String>,
}

/// What the token endpoint (and Kit's separate refresh URL) is asked.
#[derive(Debug, Clone)]
pub enum TokenRequest {
    Code(CodeRequest),
    Refresh(RefreshRequest),
}

impl TokenRequest {
    /// The grant type and its required parameters; an empty value counts as
    /// absent (`Params::get`).
    pub fn parse(params: &Params) -> Result<Self, OAuthError> {
        let owned = |name: &str| params.get(name).map(str::to_string);
        match params.get("grant_type") {
            None => Err(OAuthError::invalid_request("grant_type is required")),
            Some("authorization_code") => Ok(TokenRequest::Code(CodeRequest {
                code: owned("code")
                    .ok_or_else(|| OAuthError::invalid_request("code is required"))?,
                redirect_uri: owned("redirect_uri"),
                code_verifier: owned("code_verifier"),
            })),
            Some("refresh_token") => Ok(TokenRequest::Refresh(RefreshRequest {
                refresh_token: owned("refresh_token")
                    .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?,
                scope: owned("scope"),
            })),
            Some(_) => Err(OAuthError::unsupported_grant_type(
                "grant_type must be authorization_code or refresh_token",
            )),
        }
    }

    /// Whether the client must send its secret: a code exchange always; a
    /// refresh unless the app allows refreshing without one (Kit sends none).
    pub fn secret_requirement(&self) -> SecretRequirement {
        match self {
            TokenRequest::Code(_) => SecretRequirement::Required,
            TokenRequest::Refresh(_) => SecretRequirement::OptionalIfAppAllows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn parse(body: &str) -> Result<TokenRequest, OAuthError> {
        TokenRequest::parse(&crate::params::parse_body(body.as_bytes()).unwrap())
    }

    #[test]
    fn a_request_is_typed_by_its_grant_and_its_required_parameters() {
        let code =
            parse("grant_type=authorization_code&code=kac_x&redirect_uri=https%3A%2F%2Fa").unwrap();
        assert!(matches!(&code, TokenRequest::Code(c)
            if c.code == "kac_x" && c.redirect_uri.as_deref() == Some("https://a") && c.code_verifier.is_none()));
        assert_eq!(code.secret_requirement(), SecretRequirement::Required);
        // Kit's JSON under a form content type reads the same.
        let refresh = parse(r#"{"grant_type":"refresh_token","refresh_token":"krt_y"}"#).unwrap();
        assert!(matches!(&refresh, TokenRequest::Refresh(r)
            if r.refresh_token == "krt_y" && r.scope.is_none()));
        assert_eq!(
            refresh.secret_requirement(),
            SecretRequirement::OptionalIfAppAllows
        );
        for (body, error, description) in [
            (
                "code=kac_x",
                ErrorCode::InvalidRequest,
                "grant_type is required",
            ),
            (
                "grant_type=password",
                ErrorCode::UnsupportedGrantType,
                "grant_type must be authorization_code or refresh_token",
            ),
            (
                "grant_type=authorization_code",
                ErrorCode::InvalidRequest,
                "code is required",
            ),
            (
                "grant_type=authorization_code&code=",
                ErrorCode::InvalidRequest,
                "code is required",
            ),
            (
                "grant_type=refresh_token",
                ErrorCode::InvalidRequest,
                "refresh_token is required",
            ),
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(
                (e.error, e.description.as_str()),
                (error, description),
                "{body}"
            );
        }
    }
}
