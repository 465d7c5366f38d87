//! Binaries, temporary folders, fixtures, running commands.
