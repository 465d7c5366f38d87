//! A backend that reads from another and writes nothing (restic's
//! `backend/dryrun`): `--dry-run` of `backup`, `rewrite` and `repair
//! snapshots` runs the whole command against it, so everything is
//! computed and reported but no file is stored or removed.

use std::sync::Arc;

use crate::backend::{Backend, BackendResult, FileInfo, FileType};

/// Reads pass through; `write`, `remove` and `create` succeed without
/// doing anything.
pub struct DryRunBackend {
    inner: Arc<dyn Backend>,
}

impl DryRunBackend {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        DryRunBackend { inner }
    }
}

impl Backend for DryRunBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> BackendResult<()> {
        Ok(())
    }
    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        self.inner.list(file_type)
    }
    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>> {
        self.inner.read(file_type, name)
    }
    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        self.inner.read_range(file_type, name, offset, length)
    }
    fn write(&self, _file_type: FileType, _name: &str, _data: &[u8]) -> BackendResult<()> {
        Ok(())
    }
    fn write_in_order(&self, _files: &[(FileType, &str, &[u8])]) -> BackendResult<()> {
        Ok(())
    }
    fn remove(&self, _file_type: FileType, _name: &str) -> BackendResult<()> {
        Ok(())
    }
    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        self.inner.stat(file_type, name)
    }
    fn connections(&self) -> usize {
        self.inner.connections()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;

    #[test]
    fn writes_and_removes_nothing() {
        let dir = std::env::temp_dir().join(format!("restix-dry-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.clone()));
        local.create().unwrap();
        local
            .write(FileType::Snapshot, &"a".repeat(64), b"kept")
            .unwrap();
        let dry = DryRunBackend::new(Arc::clone(&local));
        dry.write(FileType::Snapshot, &"b".repeat(64), b"new")
            .unwrap();
        dry.remove(FileType::Snapshot, &"a".repeat(64)).unwrap();
        let names: Vec<String> = dry
            .list(FileType::Snapshot)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, vec!["a".repeat(64)]);
        let (index, snapshot) = ("c".repeat(64), "d".repeat(64));
        dry.write_in_order(&[
            (FileType::Index, &index, b"index"),
            (FileType::Snapshot, &snapshot, b"snapshot"),
        ])
        .unwrap();
        assert!(local.list(FileType::Index).unwrap().is_empty());
        assert_eq!(local.list(FileType::Snapshot).unwrap().len(), 1);
        assert_eq!(
            dry.read(FileType::Snapshot, &"a".repeat(64)).unwrap(),
            b"kept"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
