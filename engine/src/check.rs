//! check: verify the structure and, optionally, every byte of a repository.
