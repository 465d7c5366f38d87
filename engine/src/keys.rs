//! Key files: list, add, remove, change password.
