//! Parsing `sftp:` repository locations and the `-o sftp.*` extended options,
//! exactly as restic does (spec: cli §5.1, §5.2, §5.4).

use std::fmt;
use std::str::FromStr;

use restix_backend::options::parse_go_uint;

use crate::error::SftpError;

/// A parsed `sftp:` repository location.
///
/// `path` is absolute (`/srv/repo`) or relative to the login folder of the
/// SFTP server (usually `$HOME`); it is cleaned like Go's `path.Clean`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpLocation {
    /// Login name, when the location names one (`user@host`).
    pub user: Option<String>,
    /// Host name or address as written (an `~/.ssh/config` alias works too).
    pub host: String,
    /// Port, only in the URL form (`sftp://host:2222/...`).
    pub port: Option<u16>,
    /// Repository folder on the server.
    pub path: String,
    /// The location exactly as the user wrote it.
    pub original: String,
}

impl SftpLocation {
    /// Parse `sftp:[user@]host:path` or `sftp://[user@]host[:port]/path`
    /// (spec: cli §5.1).
    pub fn parse(s: &str) -> Result<Self, SftpError> {
        let rest = s.strip_prefix("sftp:").ok_or_else(|| {
            SftpError::InvalidLocation(format!("{s}: not an sftp location (sftp:host:/path)"))
        })?;
        let (user, host, port, dir) = if let Some(url) = rest.strip_prefix("//") {
            parse_url_form(s, url)?
        } else {
            parse_short_form(rest)?
        };
        if host.is_empty() {
            return Err(SftpError::InvalidLocation(
                "sftp: invalid format, hostname or path not found".to_string(),
            ));
        }
        let path = restix_backend::go_path::clean(&dir);
        if path.starts_with('~') {
            return Err(SftpError::InvalidLocation(
                "sftp path starts with the tilde (~) character, that fails for most sftp servers.\n\
                 Use a relative directory, most servers interpret this as relative to the user's home directory."
                    .to_string(),
            ));
        }
        Ok(SftpLocation {
            user,
            host,
            port,
            path,
            original: s.to_string(),
        })
    }
}

impl FromStr for SftpLocation {
    type Err = SftpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SftpLocation::parse(s)
    }
}

impl fmt::Display for SftpLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

type Parts = (Option<String>, String, Option<u16>, String);

/// `[user@]host:path`: split at the first colon; the user is everything
/// before the last `@` of the host part (so `a@b@host` has user `a@b`).
fn parse_short_form(rest: &str) -> Result<Parts, SftpError> {
    let (host_part, dir) = rest.split_once(':').ok_or_else(|| {
        SftpError::InvalidLocation("sftp: invalid format, hostname or path not found".to_string())
    })?;
    let (user, host) = match host_part.rsplit_once('@') {
        Some((user, host)) => (Some(user.to_string()), host.to_string()),
        None => (None, host_part.to_string()),
    };
    if host.is_empty() || dir.is_empty() {
        return Err(SftpError::InvalidLocation(
            "sftp: invalid format, hostname or path not found".to_string(),
        ));
    }
    Ok((user.filter(|u| !u.is_empty()), host, None, dir.to_string()))
}

/// `//[user@]host[:port]/path`: the URL path minus its first `/`, so
/// `//host//abs` is `/abs` and `//host/rel` is `rel`.
fn parse_url_form(original: &str, url: &str) -> Result<Parts, SftpError> {
    let (authority, url_path) = match url.find('/') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let dir = url_path.strip_prefix('/').unwrap_or(url_path);
    if dir.is_empty() {
        return Err(SftpError::InvalidLocation(format!(
            "invalid backend \"{original}\", no directory specified"
        )));
    }
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, hp)) => (Some(percent_decode(user)), hp),
        None => (None, authority),
    };
    let (host, port) = split_host_port(host_port).ok_or_else(|| {
        SftpError::InvalidLocation(format!("{original}: invalid host or port in URL"))
    })?;
    Ok((
        user.filter(|u| !u.is_empty()),
        host,
        port,
        percent_decode(dir),
    ))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) if !p.is_empty() => Some(p.parse().ok()?),
            Some(_) => None,
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((host, "")) => Some((host.to_string(), None)),
        Some((host, port)) => Some((host.to_string(), Some(port.parse().ok()?))),
        None => Some((s.to_string(), None)),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or(0);
        if b == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `-o sftp.*` extended options (spec: cli §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpOptions {
    /// `sftp.connections`: SSH connections used in parallel (default 5).
    pub connections: usize,
    /// `sftp.command`: run this command and speak SFTP over its stdin/stdout.
    pub command: Option<String>,
    /// `sftp.args`: extra arguments for `ssh` (subprocess mode).
    pub args: Option<String>,
}

impl Default for SftpOptions {
    fn default() -> Self {
        SftpOptions {
            connections: 5,
            command: None,
            args: None,
        }
    }
}

impl SftpOptions {
    /// Set one option by its name without the `sftp.` namespace
    /// (`connections`, `command`, `args`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SftpError> {
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        match key.as_str() {
            "connections" => {
                let n = parse_go_uint(value).ok_or_else(|| {
                    SftpError::InvalidOption(format!(
                        "strconv.ParseUint: parsing \"{value}\": invalid syntax"
                    ))
                })?;
                self.connections = usize::try_from(n).unwrap_or(usize::MAX).max(1);
            }
            "command" => self.command = Some(value.to_string()),
            "args" => self.args = Some(value.to_string()),
            other => {
                return Err(SftpError::InvalidOption(format!(
                    "option sftp.{other} is not known"
                )))
            }
        }
        Ok(())
    }

    /// Build options from all `-o key=value` pairs: keys of the `sftp.`
    /// namespace are applied, others (and keys without a dot) are ignored
    /// like restic does.
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Self, SftpError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut opts = SftpOptions::default();
        for (key, value) in pairs {
            let key = key.trim().to_ascii_lowercase();
            if let Some(name) = key.strip_prefix("sftp.") {
                opts.set(name, value)?;
            }
        }
        Ok(opts)
    }

    /// Refuse option combinations restic refuses.
    pub fn validate(&self) -> Result<(), SftpError> {
        if self.command.is_some() && self.args.is_some() {
            return Err(SftpError::InvalidOption(
                "cannot specify both sftp.command and sftp.args options".to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SftpLocation {
        SftpLocation::parse(s).unwrap()
    }

    #[test]
    fn short_forms() {
        let l = p("sftp:user@host:/abs/path");
        assert_eq!(l.user.as_deref(), Some("user"));
        assert_eq!(l.host, "host");
        assert_eq!(l.port, None);
        assert_eq!(l.path, "/abs/path");
        let l = p("sftp:host:rel/path");
        assert_eq!(l.user, None);
        assert_eq!(l.path, "rel/path");
        let l = p("sftp:a@b@host:/p");
        assert_eq!(l.user.as_deref(), Some("a@b"));
        assert_eq!(l.host, "host");
        let l = p("sftp:host:/a//b/./c/../d/");
        assert_eq!(l.path, "/a/b/d");
    }

    #[test]
    fn url_forms() {
        let l = p("sftp://user@host:2222//abs/path");
        assert_eq!(l.user.as_deref(), Some("user"));
        assert_eq!(l.host, "host");
        assert_eq!(l.port, Some(2222));
        assert_eq!(l.path, "/abs/path");
        let l = p("sftp://host/rel/path");
        assert_eq!(l.user, None);
        assert_eq!(l.port, None);
        assert_eq!(l.path, "rel/path");
        let l = p("sftp://[::1]:22//srv");
        assert_eq!(l.host, "::1");
        assert_eq!(l.port, Some(22));
        assert_eq!(l.path, "/srv");
    }

    #[test]
    fn errors() {
        let e = SftpLocation::parse("sftp://host").unwrap_err().to_string();
        assert!(e.contains("no directory specified"), "{e}");
        let e = SftpLocation::parse("sftp:hostonly")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hostname or path not found"), "{e}");
        let e = SftpLocation::parse("sftp:host:~/repo")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tilde"), "{e}");
        assert!(SftpLocation::parse("/local").is_err());
        assert!(SftpLocation::parse("sftp://host:notaport//x").is_err());
    }

    #[test]
    fn options() {
        let o = SftpOptions::from_pairs([
            ("sftp.connections", "0x10"),
            ("local.connections", "3"),
            ("nodot", "x"),
            ("SFTP.Command", " ssh -p 2222 host -s sftp "),
        ])
        .unwrap();
        assert_eq!(o.connections, 16);
        assert_eq!(o.command.as_deref(), Some("ssh -p 2222 host -s sftp"));
        assert_eq!(o.args, None);
        assert!(o.validate().is_ok());
        let e = SftpOptions::from_pairs([("sftp.bogus", "1")]).unwrap_err();
        assert!(e.to_string().contains("option sftp.bogus is not known"));
        let e = SftpOptions::from_pairs([("sftp.connections", "x")]).unwrap_err();
        assert!(e.to_string().contains("invalid syntax"));
        let o = SftpOptions::from_pairs([("sftp.command", "a"), ("sftp.args", "b")]).unwrap();
        assert!(o.validate().is_err());
        assert_eq!(SftpOptions::default().connections, 5);
        assert_eq!(parse_go_uint("010"), Some(8));
    }
}
