//! The basics of `~/.ssh/config` (ssh_config(5)): `Host` blocks with
//! patterns, `HostName`, `User`, `Port`, `IdentityFile`, `UserKnownHostsFile`.
//!
//! Like ssh, the first value obtained for a keyword wins; `IdentityFile`
//! accumulates. `Match` blocks are skipped (treated as not matching) and
//! `Include` is not followed: both are rare for a backup target and ssh's
//! full semantics would need a shell.

use std::path::{Path, PathBuf};

/// Settings that apply to one host alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// `HostName`, with `%h` replaced by the alias.
    pub hostname: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Port`.
    pub port: Option<u16>,
    /// `IdentityFile`s in order, `~` expanded.
    pub identity_files: Vec<PathBuf>,
    /// `UserKnownHostsFile`s (several may be given on one line).
    pub user_known_hosts_files: Vec<PathBuf>,
}

impl HostConfig {
    /// Read `path` (absent file = no settings) and return the settings for `alias`.
    pub fn load(path: &Path, alias: &str, home: &Path) -> HostConfig {
        match std::fs::read_to_string(path) {
            Ok(text) => HostConfig::parse(&text, alias, home),
            Err(_) => HostConfig::default(),
        }
    }

    /// Settings for `alias` from the text of a config file.
    pub fn parse(text: &str, alias: &str, home: &Path) -> HostConfig {
        let mut cfg = HostConfig::default();
        // Lines before the first Host/Match apply to every host.
        let mut active = true;
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, value) = split_keyword(line);
            let keyword = keyword.to_ascii_lowercase();
            match keyword.as_str() {
                "host" => {
                    active = host_matches(&split_args(value), alias);
                    continue;
                }
                "match" => {
                    active = value.trim().eq_ignore_ascii_case("all");
                    continue;
                }
                _ => {}
            }
            if !active {
                continue;
            }
            let args = split_args(value);
            let Some(first) = args.first() else { continue };
            match keyword.as_str() {
                "hostname" if cfg.hostname.is_none() => {
                    cfg.hostname = Some(first.replace("%h", alias).replace("%%", "%"));
                }
                "user" if cfg.user.is_none() => cfg.user = Some(first.clone()),
                "port" if cfg.port.is_none() => cfg.port = first.parse().ok(),
                "identityfile" if !first.eq_ignore_ascii_case("none") => {
                    cfg.identity_files.push(expand_tilde(first, home));
                }
                "userknownhostsfile" if cfg.user_known_hosts_files.is_empty() => {
                    cfg.user_known_hosts_files = args
                        .iter()
                        .filter(|a| !a.eq_ignore_ascii_case("none"))
                        .map(|a| expand_tilde(a, home))
                        .collect();
                }
                _ => {}
            }
        }
        cfg
    }
}

/// `Keyword value` or `Keyword=value`.
fn split_keyword(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    (keyword, rest.trim())
}

/// Whitespace-separated arguments; double quotes group.
fn split_args(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut has = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                has = true;
            }
            c if c.is_whitespace() && !quoted => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        out.push(cur);
    }
    out
}

/// A `Host` line matches when any positive pattern matches and no negated
/// pattern does.
fn host_matches(patterns: &[String], alias: &str) -> bool {
    let mut matched = false;
    for pat in patterns {
        if let Some(neg) = pat.strip_prefix('!') {
            if wildcard_match(neg, alias) {
                return false;
            }
        } else if wildcard_match(pat, alias) {
            matched = true;
        }
    }
    matched
}

/// ssh's pattern match: `*` any run, `?` one character, case-insensitive.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&pc) if pc == '?' || Some(&pc) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

/// `~/x` -> `$HOME/x` and `%d` -> `$HOME`; other names are kept as written.
pub(crate) fn expand_tilde(p: &str, home: &Path) -> PathBuf {
    if p == "~" {
        home.to_path_buf()
    } else if let Some(rest) = p.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(p.replace("%d", &home.to_string_lossy()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(wildcard_match("*", "x"));
        assert!(wildcard_match("back*", "backup.example"));
        assert!(wildcard_match("h?st", "host"));
        assert!(!wildcard_match("h?st", "hoost"));
        assert!(wildcard_match("*.example.com", "a.example.com"));
        assert!(!wildcard_match("*.example.com", "example.org"));
    }

    #[test]
    fn parse_blocks() {
        let home = Path::new("/home/u");
        let text = "\
# comment
Host other
  User nobody
Host backup !backup-old b*
  HostName 10.0.0.%h
  User alice
  Port=2222
  IdentityFile ~/.ssh/backup_key
  UserKnownHostsFile ~/.ssh/kh1 /etc/kh2
Host *
  User bob
  IdentityFile ~/.ssh/id_other
  Port 22
";
        let c = HostConfig::parse(text, "backup", home);
        assert_eq!(c.hostname.as_deref(), Some("10.0.0.backup"));
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(c.port, Some(2222));
        assert_eq!(
            c.identity_files,
            vec![
                PathBuf::from("/home/u/.ssh/backup_key"),
                PathBuf::from("/home/u/.ssh/id_other")
            ]
        );
        assert_eq!(
            c.user_known_hosts_files,
            vec![PathBuf::from("/home/u/.ssh/kh1"), PathBuf::from("/etc/kh2")]
        );
        let c = HostConfig::parse(text, "backup-old", home);
        assert_eq!(c.user.as_deref(), Some("bob"));
        assert_eq!(c.hostname, None);
    }
}
