//! The local file-system backend (restic's default layout).
