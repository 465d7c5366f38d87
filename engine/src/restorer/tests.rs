//! Restorer tests against real restic repositories.
