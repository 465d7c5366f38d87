//! Repository tests against real files and fixtures.
