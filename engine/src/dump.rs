//! Dump: one file to a writer, or a folder as a tar stream.
