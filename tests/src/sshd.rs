//! A private OpenSSH sshd on 127.0.0.1 with its own host and user keys.
