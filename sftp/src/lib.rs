//! SFTP backend for restix.
