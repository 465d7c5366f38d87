//! Strict host key checking against OpenSSH `known_hosts` files (sshd(8)
//! "SSH_KNOWN_HOSTS FILE FORMAT"): plain and hashed (`|1|salt|hmac`) host
//! patterns, wildcards and negation, `[host]:port` for non-default ports,
//! `@revoked` markers. There is no "accept new key" mode: an unknown key is
//! refused and the user is told how to add it.

use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::PublicKey;
use sha1::Sha1;

use crate::ssh_config::wildcard_match;

/// Outcome of checking a server's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// A known_hosts entry for this host holds exactly this key.
    Trusted,
    /// No entry holds this key; `other_types` lists the algorithms of keys
    /// that are known for the host (empty when the host is not known at all).
    Unknown { other_types: Vec<String> },
    /// An entry for this host holds a different key of the same type.
    Changed { file: PathBuf, line: usize },
    /// The key is marked `@revoked`.
    Revoked { file: PathBuf, line: usize },
}

/// The name a known_hosts entry uses for `host` on `port`.
pub fn host_entry_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Check `key` offered by `host:port` against `files` (missing files are skipped).
pub fn check_host_key(files: &[PathBuf], host: &str, port: u16, key: &PublicKey) -> HostKeyVerdict {
    let name = host_entry_name(host, port);
    let mut trusted = false;
    let mut changed: Option<(PathBuf, usize)> = None;
    let mut other_types = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (index, line) in text.lines().enumerate() {
            let Some(entry) = parse_line(line) else {
                continue;
            };
            if !patterns_match(entry.patterns, &name) {
                continue;
            }
            let Ok(known) = russh::keys::parse_public_key_base64(entry.key_base64) else {
                continue;
            };
            let same = known.key_data() == key.key_data();
            match entry.marker {
                Marker::Revoked if same => {
                    return HostKeyVerdict::Revoked {
                        file: file.clone(),
                        line: index + 1,
                    }
                }
                Marker::Revoked | Marker::CertAuthority => continue,
                Marker::None => {}
            }
            if same {
                trusted = true;
            } else if known.algorithm() == key.algorithm() {
                if changed.is_none() {
                    changed = Some((file.clone(), index + 1));
                }
            } else {
                other_types.push(known.algorithm().to_string());
            }
        }
    }
    // A matching entry anywhere wins over a stale one elsewhere, like ssh.
    if trusted {
        HostKeyVerdict::Trusted
    } else if let Some((file, line)) = changed {
        HostKeyVerdict::Changed { file, line }
    } else {
        HostKeyVerdict::Unknown { other_types }
    }
}

enum Marker {
    None,
    Revoked,
    CertAuthority,
}

struct Entry<'a> {
    marker: Marker,
    patterns: &'a str,
    key_base64: &'a str,
}

fn parse_line(line: &str) -> Option<Entry<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        _ => Marker::None,
    };
    if !matches!(marker, Marker::None) {
        first = fields.next()?;
    }
    let _key_type = fields.next()?;
    let key_base64 = fields.next()?;
    Some(Entry {
        marker,
        patterns: first,
        key_base64,
    })
}

/// Comma-separated patterns: hashed, negated (`!pat`) or wildcards.
fn patterns_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for pat in patterns.split(',') {
        if let Some(hashed) = pat.strip_prefix("|1|") {
            if hashed_match(hashed, name) {
                matched = true;
            }
        } else if let Some(neg) = pat.strip_prefix('!') {
            if wildcard_match(neg, name) {
                return false;
            }
        } else if wildcard_match(pat, name) {
            matched = true;
        }
    }
    matched
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
fn hashed_match(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// The known_hosts files ssh reads: the configured user files (default
/// `~/.ssh/known_hosts`, `~/.ssh/known_hosts2`) and the global ones.
pub fn known_hosts_files(home: &Path, configured: &[PathBuf]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = if configured.is_empty() {
        vec![
            home.join(".ssh").join("known_hosts"),
            home.join(".ssh").join("known_hosts2"),
        ]
    } else {
        configured.to_vec()
    };
    files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
    files.push(PathBuf::from("/etc/ssh/ssh_known_hosts2"));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPbi60dfMusbjpzBoXkQgZAzvN0jv7YPOtEWB0nWW5WF";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIIBoCB696NyurWGRzl2WAHT68TJpLL1/yMydKyWd6ijT";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join(format!("kh{}", text.len()));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("restix-kh-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn plain_port_and_changed() {
        let d = tmpdir("plain");
        let f = write(
            &d,
            &format!("# c\nother ssh-ed25519 {KEY_B}\n[h]:2222,x ssh-ed25519 {KEY_A}\n"),
        );
        let files = [f.clone()];
        assert_eq!(
            check_host_key(&files, "h", 2222, &key(KEY_A)),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            check_host_key(&files, "h", 22, &key(KEY_A)),
            HostKeyVerdict::Unknown {
                other_types: vec![]
            }
        );
        assert_eq!(
            check_host_key(&files, "h", 2222, &key(KEY_B)),
            HostKeyVerdict::Changed { file: f, line: 3 }
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn hashed_entry() {
        // Hash of "[127.0.0.1]:2222" with a fixed salt, made with the HMAC below.
        let salt = b"0123456789abcdefghij";
        let mac = Hmac::<Sha1>::new_from_slice(salt)
            .unwrap()
            .chain_update(b"[127.0.0.1]:2222")
            .finalize()
            .into_bytes();
        let line = format!(
            "|1|{}|{} ssh-ed25519 {KEY_A}\n",
            BASE64.encode(salt),
            BASE64.encode(&mac)
        );
        let d = tmpdir("hashed");
        let files = [write(&d, &line)];
        assert_eq!(
            check_host_key(&files, "127.0.0.1", 2222, &key(KEY_A)),
            HostKeyVerdict::Trusted
        );
        assert!(matches!(
            check_host_key(&files, "127.0.0.2", 2222, &key(KEY_A)),
            HostKeyVerdict::Unknown { .. }
        ));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn wildcards_negation_revoked() {
        let d = tmpdir("wild");
        let f = write(
            &d,
            &format!("*.lan,!bad.lan ssh-ed25519 {KEY_A}\n@revoked * ssh-ed25519 {KEY_B}\n"),
        );
        let files = [f.clone()];
        assert_eq!(
            check_host_key(&files, "nas.lan", 22, &key(KEY_A)),
            HostKeyVerdict::Trusted
        );
        assert!(matches!(
            check_host_key(&files, "bad.lan", 22, &key(KEY_A)),
            HostKeyVerdict::Unknown { .. }
        ));
        assert_eq!(
            check_host_key(&files, "nas.lan", 22, &key(KEY_B)),
            HostKeyVerdict::Revoked { file: f, line: 2 }
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
