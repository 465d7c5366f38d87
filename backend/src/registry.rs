//! From a repository location to an opened backend: the scheme registry.
//!
//! Like restic's `internal/backend/location`, a location `scheme:rest` names
//! its backend by the scheme before the first colon; anything else is a local
//! folder (`/srv/repo`, `../repo`, `repo`, `C:\repo`), and a string with a
//! colon that is neither a known scheme nor path-like is refused (spec: cli
//! §5.1). Each backend crate provides a [`BackendFactory`]: its scheme, the
//! names of its `-o scheme.name=value` options, and `open`. The program
//! assembles a [`Registry`] of the factories it links (restic's
//! `internal/backend/all`; restix: `cli/src/location.rs`), opens the
//! location through it, then composes the wrappers with [`crate::wrap()`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use restix_backend::local::LocalFactory;
//! use restix_backend::registry::{OpenContext, Registry, TlsOptions};
//! # let dir = std::env::temp_dir().join(format!("restix-registry-doc-{}", std::process::id()));
//! let mut registry = Registry::new();
//! registry.register(Box::new(LocalFactory));
//! let mut options = BTreeMap::new();
//! options.insert("local.connections".to_string(), "4".to_string());
//! options.insert("sftp.connections".to_string(), "9".to_string()); // another scheme's: ignored
//! let tls = TlsOptions::default();
//! let location = format!("local:{}", dir.display());
//! let backend = registry.open(&location, &options, &OpenContext::process(&tls))?;
//! assert_eq!(backend.connections(), 4);
//! # Ok::<(), restix_backend::registry::OpenError>(())
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::Backend;

/// The schemes restic has backends for (spec: cli §5.1 step 1). A location
/// with one of these schemes is never taken for a local path, even when
/// restix has no backend for it.
pub const KNOWN_SCHEMES: &[&str] = &[
    "local", "sftp", "rest", "s3", "gs", "azure", "b2", "swift", "rclone",
];

/// The `-o` options of one scheme, namespace stripped: `-o
/// sftp.connections=8` is `connections` -> `8` for the `sftp` factory.
pub type SchemeOptions = BTreeMap<String, String>;

/// The transport settings of the global flags, for the backends that speak
/// HTTP(S) (restic's `backend.TransportOptions`); the CLI resolves the
/// flags and their environment variables once and fills this.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `--cacert FILE` (repeatable; else `$RESTIC_CACERT`): PEM files whose
    /// certificates replace the default roots, like restic does.
    pub ca_cert_files: Vec<PathBuf>,
    /// `--insecure-tls`: skip server certificate verification.
    pub insecure: bool,
    /// `--tls-client-cert FILE` (else `$RESTIC_TLS_CLIENT_CERT`): a PEM file
    /// with the client certificate and its key, for servers that ask for one.
    pub client_cert: Option<PathBuf>,
    /// `--http-user-agent` (else `$RESTIC_HTTP_USER_AGENT`): the
    /// `User-Agent` of every HTTP request; `None`: `restix/<version>`.
    pub http_user_agent: Option<String>,
}

/// What every factory may need besides the location and its options.
pub struct OpenContext<'a> {
    /// `--cacert`, `--insecure-tls`, `--tls-client-cert`.
    pub tls: &'a TlsOptions,
    /// The environment (credentials such as `AWS_ACCESS_KEY_ID`); tests pass
    /// their own instead of changing the process's.
    pub env: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl<'a> OpenContext<'a> {
    /// `tls` and the process environment.
    pub fn process(tls: &'a TlsOptions) -> OpenContext<'a> {
        OpenContext {
            tls,
            env: &process_env,
        }
    }

    /// The environment variable `name`, if set.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }
}

/// A location split at its scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// `local`, `sftp`, `s3`, ...; `local` for a plain path.
    pub scheme: String,
    /// The location exactly as written (`sftp:host:/srv/repo`, `/srv/repo`).
    pub text: String,
    /// What follows `scheme:` (for a plain path: the path).
    pub rest: String,
}

/// Why a location could not be opened. Each variant maps to one of restic's
/// messages (the CLI adds `Fatal:` and the location where restic does).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The location does not parse: `parsing repository location failed: ...`.
    #[error("{0}")]
    Location(String),
    /// An unknown `-o` option or a bad option value: printed as `Fatal: ...`.
    #[error("{0}")]
    Option(String),
    /// A number Go's `strconv` rejects (`-o sftp.connections=x`): restic
    /// prints it without `Fatal:` (spec: cli §5.4).
    #[error("{0}")]
    OptionSyntax(String),
    /// A scheme restic has and restix does not (yet).
    #[error("the {scheme} backend is not supported yet by restix")]
    Unsupported {
        /// The scheme, such as `gs`.
        scheme: String,
    },
    /// Opening failed (unreachable host, credentials, host key, ...):
    /// `unable to open repository at <location>: ...`.
    #[error("{0}")]
    Open(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl OpenError {
    /// A `-o` value a backend rejected, by its message: Go's number and
    /// duration syntax errors (`strconv.…`, `time: …`) print without
    /// `Fatal:` as restic's do (spec: cli §5.4), any other as a fatal option
    /// error. The one place every backend's option errors are sorted.
    pub fn rejected_option(message: String) -> OpenError {
        if message.starts_with("strconv.") || message.starts_with("time:") {
            OpenError::OptionSyntax(message)
        } else {
            OpenError::Option(message)
        }
    }

    /// [`OpenError::Open`] from any error.
    pub fn open(error: impl std::error::Error + Send + Sync + 'static) -> OpenError {
        OpenError::Open(Box::new(error))
    }
}

/// How a backend crate plugs into the registry (restic's `location.Factory`).
pub trait BackendFactory: Send + Sync {
    /// The scheme before the colon (`sftp`).
    fn scheme(&self) -> &'static str;

    /// The option names of the scheme's `-o` namespace (`connections` for
    /// `-o sftp.connections=N`); others in that namespace are refused with
    /// `option sftp.x is not known`.
    fn option_names(&self) -> &'static [&'static str];

    /// Check that `location` parses, before the options are looked at
    /// (restic reports a bad location first). `open` parses it again.
    fn check_location(&self, location: &Location) -> Result<(), OpenError> {
        let _ = location;
        Ok(())
    }

    /// Parse `location` and open the backend (dialing where the protocol
    /// has a session, so unreachable hosts and bad credentials show here).
    /// The backend comes back bare: [`crate::wrap()`] adds the wrappers.
    fn open(
        &self,
        location: &Location,
        options: &SchemeOptions,
        ctx: &OpenContext<'_>,
    ) -> Result<Box<dyn Backend>, OpenError>;

    /// The location fit to print: passwords in it replaced (restic's
    /// `StripPassword`, for `rest:https://user:pass@host/`).
    fn strip_password(&self, location: &str) -> String {
        location.to_string()
    }
}

/// Scheme -> factory.
#[derive(Default)]
pub struct Registry {
    factories: Vec<Box<dyn BackendFactory>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("schemes", &self.schemes())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Add a factory; one registered before for the same scheme is replaced.
    pub fn register(&mut self, factory: Box<dyn BackendFactory>) -> &mut Registry {
        self.factories.retain(|f| f.scheme() != factory.scheme());
        self.factories.push(factory);
        self
    }

    /// The factory of `scheme`.
    pub fn lookup(&self, scheme: &str) -> Option<&dyn BackendFactory> {
        self.factories
            .iter()
            .find(|f| f.scheme() == scheme)
            .map(|f| f.as_ref())
    }

    /// The registered schemes, in registration order.
    pub fn schemes(&self) -> Vec<&'static str> {
        self.factories.iter().map(|f| f.scheme()).collect()
    }

    /// Split `text` at its scheme (see the module docs). A registered
    /// scheme or one of [`KNOWN_SCHEMES`] is a scheme; other text is a local
    /// path unless it holds a colon and is not path-like.
    pub fn parse(&self, text: &str) -> Result<Location, OpenError> {
        if let Some((scheme, rest)) = text.split_once(':') {
            if KNOWN_SCHEMES.contains(&scheme) || self.lookup(scheme).is_some() {
                return Ok(Location {
                    scheme: scheme.to_string(),
                    text: text.to_string(),
                    rest: rest.to_string(),
                });
            }
            if !is_path_like(text) {
                return Err(OpenError::Location(
                    "invalid backend\nIf the repository is in a local directory, you need to add a `local:` prefix"
                        .to_string(),
                ));
            }
        }
        Ok(Location {
            scheme: "local".to_string(),
            text: text.to_string(),
            rest: text.to_string(),
        })
    }

    /// Parse `text`, pick the options of its scheme out of all `-o` options
    /// (`all`: full keys such as `sftp.connections`) and open the backend.
    pub fn open(
        &self,
        text: &str,
        all: &BTreeMap<String, String>,
        ctx: &OpenContext<'_>,
    ) -> Result<Box<dyn Backend>, OpenError> {
        let location = self.parse(text)?;
        let factory = self
            .lookup(&location.scheme)
            .ok_or_else(|| OpenError::Unsupported {
                scheme: location.scheme.clone(),
            })?;
        factory.check_location(&location)?;
        let options = options_for_scheme(all, factory.scheme(), factory.option_names())?;
        factory.open(&location, &options, ctx)
    }

    /// `text` fit to print (passwords removed by its scheme's factory).
    pub fn strip_password(&self, text: &str) -> String {
        match self.parse(text) {
            Ok(location) => match self.lookup(&location.scheme) {
                Some(factory) => factory.strip_password(text),
                None => text.to_string(),
            },
            Err(_) => text.to_string(),
        }
    }
}

/// restic's `isPath`: strings that are local paths even with a colon.
pub fn is_path_like(s: &str) -> bool {
    let bytes = s.as_bytes();
    let windows_drive =
        matches!(bytes, [letter, b':', b'\\' | b'/', ..] if letter.is_ascii_alphabetic());
    s.starts_with('/')
        || s.starts_with('\\')
        || s.starts_with("../")
        || s.starts_with("..\\")
        || windows_drive
}

/// The options of `scheme` out of all `-o` options, namespace stripped.
/// Keys without a dot and other namespaces are ignored (restic applies only
/// the location's own); a name not in `known` is
/// `option scheme.name is not known`.
pub fn options_for_scheme(
    all: &BTreeMap<String, String>,
    scheme: &str,
    known: &[&str],
) -> Result<SchemeOptions, OpenError> {
    let mut selected = SchemeOptions::new();
    for (key, value) in all {
        let Some((namespace, name)) = key.split_once('.') else {
            continue;
        };
        if namespace != scheme {
            continue;
        }
        if !known.contains(&name) {
            return Err(OpenError::Option(format!("option {key} is not known")));
        }
        selected.insert(name.to_string(), value.clone());
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_paths() {
        let r = Registry::new();
        let loc = |s: &str| r.parse(s).unwrap();
        assert_eq!(loc("/srv/repo").scheme, "local");
        assert_eq!(loc("repo").rest, "repo");
        assert_eq!(loc("local:/srv/r").rest, "/srv/r");
        assert_eq!(loc("/a:b").scheme, "local");
        assert_eq!(loc("C:\\repo").scheme, "local");
        let sftp = loc("sftp:u@h:/p");
        assert_eq!(
            (sftp.scheme.as_str(), sftp.text.as_str()),
            ("sftp", "sftp:u@h:/p")
        );
        assert_eq!(loc("gs:bucket:/p").scheme, "gs");
        let err = r.parse("foo:bar").unwrap_err().to_string();
        assert!(err.starts_with("invalid backend\n"), "{err}");
    }

    #[test]
    fn unregistered_known_scheme_is_unsupported() {
        let r = Registry::new();
        let tls = TlsOptions::default();
        let err = r
            .open(
                "b2:bucket:path",
                &BTreeMap::new(),
                &OpenContext::process(&tls),
            )
            .err()
            .unwrap();
        assert!(
            matches!(&err, OpenError::Unsupported { scheme } if scheme == "b2"),
            "{err:?}"
        );
    }

    #[test]
    fn options_of_one_namespace() {
        let mut all = BTreeMap::new();
        all.insert("sftp.connections".to_string(), "3".to_string());
        all.insert("local.connections".to_string(), "1".to_string());
        all.insert("foo".to_string(), "1".to_string());
        let sftp = options_for_scheme(&all, "sftp", &["connections", "command"]).unwrap();
        assert_eq!(sftp.get("connections").map(String::as_str), Some("3"));
        assert_eq!(sftp.len(), 1);
        all.insert("local.bogus".to_string(), "1".to_string());
        let err = options_for_scheme(&all, "local", &["connections"]).unwrap_err();
        assert_eq!(err.to_string(), "option local.bogus is not known");
        assert!(matches!(err, OpenError::Option(_)));
    }
}
