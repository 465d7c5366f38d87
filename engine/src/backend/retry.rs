//! Retries with backoff as a wrapper around any backend.
