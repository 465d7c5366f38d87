//! [`SftpError`]: what can go wrong opening an SFTP repository. Its own
//! module, below every other, so that none of them imports the crate root.

use restix_backend::BackendError;

/// Errors of opening an SFTP repository (operations return
/// [`BackendError`]s).
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    /// The `sftp:` location does not parse (spec: cli §5.1).
    #[error("{0}")]
    InvalidLocation(String),
    /// A bad `-o sftp.*` option (spec: cli §5.4).
    #[error("{0}")]
    InvalidOption(String),
    /// The server's host key is not in known_hosts.
    #[error("host key verification failed for {host}: {message}")]
    UnknownHostKey { host: String, message: String },
    /// The server's host key differs from the recorded one (or is revoked).
    #[error("host key verification failed for {host}:\n{message}")]
    HostKeyChanged { host: String, message: String },
    /// No key was accepted.
    #[error("{target}: authentication failed (publickey): {tried}")]
    Auth { target: String, tried: String },
    /// TCP connect or socket error.
    #[error("{target}: cannot connect: {source}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// SSH protocol failure.
    #[error("ssh: {0}")]
    Ssh(String),
    /// SFTP session failure.
    #[error("sftp: {0}")]
    Sftp(String),
    /// The `sftp.command` subprocess failed to start.
    #[error("{0}")]
    Subprocess(String),
    /// The internal tokio runtime could not start.
    #[error("cannot start the SFTP runtime: {0}")]
    Runtime(std::io::Error),
}

impl SftpError {
    /// Errors worth retrying on a fresh connection (network, server gone);
    /// not host key, authentication or configuration problems.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SftpError::Connect { .. } | SftpError::Ssh(_) | SftpError::Sftp(_)
        )
    }
}

impl From<SftpError> for BackendError {
    fn from(e: SftpError) -> Self {
        BackendError::Other(e.to_string())
    }
}
