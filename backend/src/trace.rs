//! `RESTIX_TRACE_BACKEND=1`: one stderr line per backend call (start, time
//! taken, thread), to see which calls wait for each other on a long link.
//! A diagnostic, not part of restic's interface.

use std::time::Instant;

use crate::{Backend, BackendResult, FileInfo, FileType};

/// Logs every call of the backend inside it.
pub struct Traced<B> {
    inner: B,
    start: Instant,
}

impl<B: Backend> Traced<B> {
    /// Trace `inner`, times counted from now.
    pub fn new(inner: B) -> Self {
        Traced {
            inner,
            start: Instant::now(),
        }
    }

    fn run<T>(&self, what: String, f: impl FnOnce() -> BackendResult<T>) -> BackendResult<T> {
        let begun = self.start.elapsed();
        let result = f();
        let took = self.start.elapsed() - begun;
        eprintln!(
            "backend {:>8.3} +{:>7.3} {:?} {what}{}",
            begun.as_secs_f64(),
            took.as_secs_f64(),
            std::thread::current().id(),
            if result.is_err() { " (error)" } else { "" }
        );
        result
    }
}

fn short(name: &str) -> &str {
    name.get(..8).unwrap_or(name)
}

impl<B: Backend> Backend for Traced<B> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> BackendResult<()> {
        self.run("create".into(), || self.inner.create())
    }
    fn list(&self, t: FileType) -> BackendResult<Vec<FileInfo>> {
        self.run(format!("list {t}"), || self.inner.list(t))
    }
    fn read(&self, t: FileType, name: &str) -> BackendResult<Vec<u8>> {
        self.run(format!("read {t} {}", short(name)), || {
            self.inner.read(t, name)
        })
    }
    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        self.run(
            format!("read_range {t} {} {offset}+{length}", short(name)),
            || self.inner.read_range(t, name, offset, length),
        )
    }
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        self.run(format!("write {t} {} {}", short(name), data.len()), || {
            self.inner.write(t, name, data)
        })
    }
    fn write_in_order(&self, files: &[(FileType, &str, &[u8])]) -> BackendResult<()> {
        let what: Vec<String> = files
            .iter()
            .map(|(t, name, data)| format!("{t} {} {}", short(name), data.len()))
            .collect();
        self.run(format!("write_in_order {}", what.join(", ")), || {
            self.inner.write_in_order(files)
        })
    }
    fn remove(&self, t: FileType, name: &str) -> BackendResult<()> {
        self.run(format!("remove {t} {}", short(name)), || {
            self.inner.remove(t, name)
        })
    }
    fn stat(&self, t: FileType, name: &str) -> BackendResult<FileInfo> {
        self.run(format!("stat {t} {}", short(name)), || {
            self.inner.stat(t, name)
        })
    }
    fn connections(&self) -> usize {
        self.inner.connections()
    }
    fn list_after_write_consistent(&self) -> bool {
        self.inner.list_after_write_consistent()
    }
    fn has_flaky_errors(&self) -> bool {
        self.inner.has_flaky_errors()
    }
}
