//! Restorer: writes a snapshot (or part of it) back to the file system.
