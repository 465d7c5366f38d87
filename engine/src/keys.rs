//! Key files: list, add, remove, change password.
//!
//! Key files are plain JSON (spec: restic-format §5); their name is the
//! SHA-256 of their bytes. Every key wraps the same master key, so adding
//! a key never touches other files.
//!
//! ```no_run
//! # use restix_engine::repository::Repository;
//! # fn demo(repo: &Repository) -> Result<(), restix_engine::keys::KeyError> {
//! use restix_engine::keys::{add_key, list_keys, remove_key};
//! use restix_repo_format::{GoTime, ScryptParams};
//! let id = add_key(repo, b"new password", "me", "host", GoTime::now_local(), ScryptParams::default())?;
//! assert!(list_keys(repo)?.iter().any(|(k, _)| *k == id));
//! remove_key(repo, &id)?;
//! # Ok(()) }
//! ```

use restix_repo_format::keyfile::{KeyFile, ScryptParams};
use restix_repo_format::{GoTime, Id};
use sha2::{Digest, Sha256};

use crate::backend::{BackendError, FileType};
use crate::repository::Repository;

/// Errors of key management.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A key file is not valid JSON.
    #[error("key {id}: {reason}")]
    Invalid {
        /// The key file.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Creating the key failed (scrypt parameters, encoding).
    #[error("creating key: {0}")]
    Create(String),
    /// The key is the one used to open the repository.
    #[error("refusing to remove key currently used to access repository")]
    CurrentKey,
    /// No key with that ID (prefix).
    #[error("{0}")]
    NotFound(String),
}

/// All key files, in the backend's listing order.
pub fn list_keys(repo: &Repository) -> Result<Vec<(Id, KeyFile)>, KeyError> {
    let mut out = Vec::new();
    for f in repo.backend().list(FileType::Key)? {
        let Ok(id) = Id::from_hex(&f.name) else {
            continue;
        };
        let data = repo.backend().read(FileType::Key, &f.name)?;
        let kf = KeyFile::parse(&data).map_err(|e| KeyError::Invalid {
            id: f.name.clone(),
            reason: e.to_string(),
        })?;
        out.push((id, kf));
    }
    Ok(out)
}

/// Store a new key file for `password`; returns its ID.
pub fn add_key(
    repo: &Repository,
    password: &[u8],
    username: &str,
    hostname: &str,
    created: GoTime,
    params: ScryptParams,
) -> Result<Id, KeyError> {
    let kf = KeyFile::create(repo.key(), password, params, username, hostname, created)
        .map_err(|e| KeyError::Create(e.to_string()))?;
    let json = kf.to_json().map_err(|e| KeyError::Create(e.to_string()))?;
    let id = Id(Sha256::digest(&json).into());
    repo.backend().write(FileType::Key, &id.to_hex(), &json)?;
    Ok(id)
}

/// Resolve a key ID prefix to the full ID.
pub fn find_key(repo: &Repository, prefix: &str) -> Result<Id, KeyError> {
    repo.find_file(FileType::Key, prefix)
        .map_err(|e| KeyError::NotFound(e.to_string()))
}

/// Remove a key file; refuses the key in use.
pub fn remove_key(repo: &Repository, id: &Id) -> Result<(), KeyError> {
    if id == repo.key_id() {
        return Err(KeyError::CurrentKey);
    }
    repo.backend().remove(FileType::Key, &id.to_hex())?;
    Ok(())
}
