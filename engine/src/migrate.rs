//! Repository migrations (restic internal/migrations): 0.18.1 offers one,
//! `upgrade_repo_v2`, which turns a version 1 repository into version 2
//! (compressed blobs and files allowed from then on) by rewriting only the
//! config file.
//!
//! The old config file is first copied into a new temporary folder; if
//! writing the new one fails, the old one is put back, and the error says
//! where the copy is (restic internal/repository/upgrade_repo.go).

use std::path::PathBuf;

use restix_repo_format::unpacked;

use crate::backend::{BackendError, FileType};
use crate::repository::Repository;

/// A migration restic knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub name: &'static str,
    pub description: &'static str,
}

/// The migrations of restic 0.18.1.
pub const MIGRATIONS: &[Migration] = &[Migration {
    name: "upgrade_repo_v2",
    description: "upgrade a repository to version 2",
}];

/// Errors of a migration (restic's texts).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("repository has version {0}, only upgrades from version 1 are supported")]
    WrongVersion(u32),
    #[error("load config file failed: {0}")]
    LoadConfig(#[source] BackendError),
    #[error("create temp dir failed: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("write config file backup to {dir} failed: {source}")]
    Backup {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("error uploading config ({upload}), re-uploaded old config was successful, there is a backup of the config file in {backup}")]
    Restored { upload: String, backup: String },
    #[error("error uploading config ({upload}), re-uploading old config filed failed as well ({reupload}), but there is a backup of the config file in {backup}")]
    NotRestored {
        upload: String,
        reupload: String,
        backup: String,
    },
}

/// Whether `migration` applies to `repo`, and if not, why.
pub fn check(repo: &Repository, migration: &Migration) -> (bool, String) {
    match migration.name {
        "upgrade_repo_v2" => {
            let version = repo.config().version;
            if version == 1 {
                (true, String::new())
            } else {
                (
                    false,
                    format!("repository is already upgraded to version {version}"),
                )
            }
        }
        _ => (false, String::new()),
    }
}

/// A new folder in the temp folder for the config backup.
fn backup_dir() -> Result<PathBuf, std::io::Error> {
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!(
            "restic-migrate-upgrade-repo-v2-{}",
            nanos ^ std::process::id().rotate_left(16) ^ attempt
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no unused temporary folder name"))
}

/// `upgrade_repo_v2`: store the config with version 2.
pub fn upgrade_repo_v2(repo: &Repository) -> Result<(), MigrateError> {
    let config = repo.config();
    if config.version != 1 {
        return Err(MigrateError::WrongVersion(config.version));
    }
    let backend = repo.backend();
    let raw = backend
        .read(FileType::Config, "config")
        .map_err(MigrateError::LoadConfig)?;
    let dir = backup_dir().map_err(MigrateError::TempDir)?;
    let backup = dir.join("config");
    std::fs::write(&backup, &raw).map_err(|source| MigrateError::Backup {
        dir: dir.display().to_string(),
        source,
    })?;
    let mut upgraded = config.clone();
    upgraded.version = 2;
    // The repository object still says version 1: like restic, the new
    // config is stored the version 1 way (not compressed).
    let data = unpacked::encode_unpacked(repo.key(), 1, &upgraded.to_json());
    let written = backend
        .write(FileType::Config, "config", &data)
        .or_else(|_| {
            // Backends that cannot replace a file: remove, then write.
            backend.remove(FileType::Config, "config")?;
            backend.write(FileType::Config, "config", &data)
        });
    if let Err(upload) = written {
        let _ = backend.remove(FileType::Config, "config");
        let backup = backup.display().to_string();
        return Err(match backend.write(FileType::Config, "config", &raw) {
            Ok(()) => MigrateError::Restored {
                upload: upload.to_string(),
                backup,
            },
            Err(e) => MigrateError::NotRestored {
                upload: upload.to_string(),
                reupload: e.to_string(),
                backup,
            },
        });
    }
    let _ = std::fs::remove_file(&backup);
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}
