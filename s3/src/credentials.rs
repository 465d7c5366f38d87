//! The credential chain restic uses through minio-go, in its order:
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (or `AWS_ACCESS_KEY`/`AWS_SECRET_KEY`)
//! with `AWS_SESSION_TOKEN`; then `MINIO_ROOT_USER`/`MINIO_ROOT_PASSWORD` or
//! `MINIO_ACCESS_KEY`/`MINIO_SECRET_KEY`; then the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`) section
//! `AWS_PROFILE` (else `default`). The EC2/ECS metadata service is not asked
//! (restix never talks to hosts it was not pointed at).

use std::path::PathBuf;

use crate::S3Error;

/// Access key, secret and optional session token.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// `AWS_ACCESS_KEY_ID`
    pub key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`
    pub secret: String,
    /// `AWS_SESSION_TOKEN` (temporary credentials).
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret or the token.
        f.debug_struct("AwsCredentials")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Find credentials with `env` as the environment (injectable for tests).
pub fn resolve_credentials(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AwsCredentials, S3Error> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let token = var("AWS_SESSION_TOKEN");
    let key_id = var("AWS_ACCESS_KEY_ID").or_else(|| var("AWS_ACCESS_KEY"));
    let secret = var("AWS_SECRET_ACCESS_KEY").or_else(|| var("AWS_SECRET_KEY"));
    if let (Some(key_id), Some(secret)) = (&key_id, &secret) {
        return Ok(AwsCredentials {
            key_id: key_id.clone(),
            secret: secret.clone(),
            session_token: token,
        });
    }
    for (user, password) in [
        ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"),
        ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"),
    ] {
        if let (Some(key_id), Some(secret)) = (var(user), var(password)) {
            return Ok(AwsCredentials {
                key_id,
                secret,
                session_token: None,
            });
        }
    }
    let file = var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".aws/credentials")));
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    if let Some(file) = file {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Some(creds) = parse_shared_credentials(&text, &profile) {
                return Ok(creds);
            }
        }
    }
    // restic 0.18's messages (s3.go getCredentials).
    Err(match (key_id.is_some(), secret.is_some()) {
        (false, true) => S3Error::Credentials(
            "no credentials found. $AWS_SECRET_ACCESS_KEY is set but $AWS_ACCESS_KEY_ID is empty"
                .to_string(),
        ),
        (true, false) => S3Error::Credentials(
            "no credentials found. $AWS_ACCESS_KEY_ID is set but $AWS_SECRET_ACCESS_KEY is empty"
                .to_string(),
        ),
        _ => S3Error::Credentials(
            "no credentials found. Use `-o s3.unsafe-anonymous-auth=true` for anonymous authentication"
                .to_string(),
        ),
    })
}

/// Read one profile of an INI-style AWS shared credentials file.
pub fn parse_shared_credentials(text: &str, profile: &str) -> Option<AwsCredentials> {
    let mut in_profile = false;
    let mut key_id = None;
    let mut secret = None;
    let mut token = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            // The config-file spelling `[profile name]` is accepted too.
            let name = section.strip_prefix("profile ").unwrap_or(section).trim();
            in_profile = name == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().to_string();
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => key_id = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            "aws_session_token" => token = Some(value).filter(|t| !t.is_empty()),
            _ => {}
        }
    }
    Some(AwsCredentials {
        key_id: key_id.filter(|k| !k.is_empty())?,
        secret: secret.filter(|s| !s.is_empty())?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn environment_first() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "sec"),
            ("AWS_SESSION_TOKEN", "tok"),
        ]);
        let c = resolve_credentials(&env).unwrap();
        assert_eq!(c.key_id, "id");
        assert_eq!(c.session_token.as_deref(), Some("tok"));
        assert!(!format!("{c:?}").contains("sec"));
    }

    #[test]
    fn half_set_environment_is_reported() {
        let env = env_of(&[("AWS_ACCESS_KEY_ID", "id"), ("HOME", "/nonexistent")]);
        assert!(resolve_credentials(&env)
            .unwrap_err()
            .to_string()
            .contains("$AWS_SECRET_ACCESS_KEY is empty"));
        let none = env_of(&[("HOME", "/nonexistent")]);
        assert!(resolve_credentials(&none)
            .unwrap_err()
            .to_string()
            .contains("unsafe-anonymous-auth"));
    }

    #[test]
    fn shared_file_profiles() {
        let dir = std::env::temp_dir().join(format!("restix-s3-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = d\naws_secret_access_key = ds\n\n[work]\n# comment\naws_access_key_id=w\naws_secret_access_key=ws\naws_session_token=wt\n",
        )
        .unwrap();
        let path = file.to_string_lossy().to_string();
        let env = env_of(&[("AWS_SHARED_CREDENTIALS_FILE", &path)]);
        assert_eq!(resolve_credentials(&env).unwrap().key_id, "d");
        let env = env_of(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &path),
            ("AWS_PROFILE", "work"),
        ]);
        let c = resolve_credentials(&env).unwrap();
        assert_eq!(
            (c.key_id.as_str(), c.session_token.as_deref()),
            ("w", Some("wt"))
        );
        let env = env_of(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &path),
            ("AWS_PROFILE", "nope"),
        ]);
        assert!(resolve_credentials(&env).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
