//! `rest:` repository locations, parsed the way restic parses them
//! (restic `internal/backend/rest/config.go`, facts only).
//!
//! `rest:URL`: everything after `rest:` is an `http://` or `https://` URL,
//! made to end in `/`. Credentials may sit in the URL (`user:password@`,
//! percent-encoded); when the URL has neither user name nor password,
//! `RESTIC_REST_USERNAME` / `RESTIC_REST_PASSWORD` supply them
//! ([`RestLocation::apply_environment`]). Printed locations replace the
//! password by `***`, like restic's `StripPassword`.

use percent_encoding::percent_decode_str;

use crate::RestError;

/// A parsed `rest:` location.
#[derive(Clone, PartialEq, Eq)]
pub struct RestLocation {
    /// The server URL without credentials and without the trailing `/`
    /// (`https://host:8000/repo`); request paths are appended to it.
    pub base_url: String,
    /// User name for HTTP basic authentication (`""` = none).
    pub username: String,
    /// Password for HTTP basic authentication.
    pub password: Option<String>,
    /// The location for messages: as written (with the trailing `/`
    /// restic adds), the password replaced by `***`.
    pub display: String,
}

impl std::fmt::Debug for RestLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestLocation")
            .field("base_url", &self.base_url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl RestLocation {
    /// Parse `rest:URL`.
    pub fn parse(text: &str) -> Result<RestLocation, RestError> {
        let Some(rest) = text.strip_prefix("rest:") else {
            return Err(RestError::InvalidLocation(
                "invalid REST backend specification".to_string(),
            ));
        };
        let mut with_slash = rest.to_string();
        if !with_slash.ends_with('/') {
            with_slash.push('/');
        }
        // Messages leave the URL out: it may hold a password.
        let mut url = url::Url::parse(&with_slash)
            .map_err(|e| RestError::InvalidLocation(format!("invalid REST URL: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(RestError::InvalidLocation(format!(
                "unsupported protocol scheme {:?} (want http or https)",
                url.scheme()
            )));
        }
        if url.host_str().unwrap_or_default().is_empty() {
            return Err(RestError::InvalidLocation(
                "invalid REST URL: no host".to_string(),
            ));
        }
        let username = decode(url.username());
        let password = url.password().map(decode);
        let display = match &password {
            Some(_) => {
                let mut shown = url.clone();
                // Cannot fail: the URL has a host (checked above).
                let _ = shown.set_password(Some("***"));
                format!("rest:{}", shown.as_str().replace("%2A%2A%2A", "***"))
            }
            None => format!("rest:{with_slash}"),
        };
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let base_url = url.as_str().trim_end_matches('/').to_string();
        Ok(RestLocation {
            base_url,
            username,
            password,
            display,
        })
    }

    /// restic's `ApplyEnvironment`: only when the URL carries neither a
    /// user name nor a password, take them from `RESTIC_REST_USERNAME` and
    /// `RESTIC_REST_PASSWORD` (as `env` reports them).
    pub fn apply_environment(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        if self.username.is_empty() && self.password.is_none() {
            self.username = env("RESTIC_REST_USERNAME").unwrap_or_default();
            self.password = env("RESTIC_REST_PASSWORD").filter(|p| !p.is_empty());
        }
    }

    /// The `Authorization` header value for basic authentication, when a
    /// user name or password is set.
    pub fn basic_authorization(&self) -> Option<String> {
        let password = self.password.as_deref().unwrap_or_default();
        if self.username.is_empty() && password.is_empty() {
            return None;
        }
        let pair = format!("{}:{password}", self.username);
        Some(format!(
            "Basic {}",
            data_encoding::BASE64.encode(pair.as_bytes())
        ))
    }
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_with_credentials() {
        let l = RestLocation::parse("rest:http://127.0.0.1:8000/repo").unwrap();
        assert_eq!(l.base_url, "http://127.0.0.1:8000/repo");
        assert_eq!(l.display, "rest:http://127.0.0.1:8000/repo/");
        assert_eq!(l.basic_authorization(), None);

        let l = RestLocation::parse("rest:https://al%40ce:s3cr%3At@host/").unwrap();
        assert_eq!(l.base_url, "https://host");
        assert_eq!(l.username, "al@ce");
        assert_eq!(l.password.as_deref(), Some("s3cr:t"));
        assert_eq!(l.display, "rest:https://al%40ce:***@host/");
        assert_eq!(
            l.basic_authorization().as_deref(),
            Some("Basic YWxAY2U6czNjcjp0")
        );
        assert!(!format!("{l:?}").contains("s3cr"));
    }

    #[test]
    fn environment_only_without_url_credentials() {
        let env = |name: &str| match name {
            "RESTIC_REST_USERNAME" => Some("env-user".to_string()),
            "RESTIC_REST_PASSWORD" => Some("env-pass".to_string()),
            _ => None,
        };
        let mut l = RestLocation::parse("rest:http://h:1/r/").unwrap();
        l.apply_environment(&env);
        assert_eq!(l.username, "env-user");
        assert_eq!(l.password.as_deref(), Some("env-pass"));

        let mut l = RestLocation::parse("rest:http://u@h:1/r/").unwrap();
        l.apply_environment(&env);
        assert_eq!(l.username, "u");
        assert_eq!(l.password, None);
    }

    #[test]
    fn rejects() {
        for bad in ["rest:", "rest:ftp://h/", "rest:nourl", "s3:http://h/"] {
            assert!(RestLocation::parse(bad).is_err(), "{bad}");
        }
        let e = RestLocation::parse("rest:http://u:secret@[::1/").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
