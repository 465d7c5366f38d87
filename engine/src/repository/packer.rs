//! Pack writing: blobs are appended to an open pack per blob type; a full
//! pack is handed to a bounded pool of uploader threads that finish it
//! (header, trailer, ID), verify it and store it. After the upload the pack's
//! blobs enter the in-memory index and the list of blobs awaiting an index
//! file (spec: restic-format §7.4, §16). Packs filled ahead of the index
//! (`Repository::seal_packs`) are hashed as blobs are added, so their upload
//! starts with the write; a pack of blobs found stored meanwhile is rebuilt
//! without them ([`OpenPack::retain`]) before it goes out.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use restix_repo_format::crypto::Key;
use restix_repo_format::pack::{self, HeaderRead, PackBlob};
use restix_repo_format::{BlobType, Id};
use sha2::{Digest, Sha256};

use super::{RepoError, Shared};
use crate::backend::FileType;

/// A pack being filled: encrypted blobs back to back, plus their entries.
#[derive(Debug)]
pub(crate) struct OpenPack {
    pub(crate) bytes: Vec<u8>,
    pub(crate) blobs: Vec<PackBlob>,
    /// Sum of the header entry sizes so far (for the header size limit).
    pub(crate) header_size: usize,
    /// The pack ID's hash over the bytes so far, for packs hashed as they
    /// fill ([`OpenPack::hashed`]); others are hashed whole when stored.
    hasher: Option<Sha256>,
}

/// Stored packs' buffers kept for reuse.
pub(crate) const SPARE_PACK_BUFFERS: usize = 2;

/// Uploader threads for a backend with `connections` parallel operations:
/// one per connection, at most [`MAX_UPLOAD_THREADS`]. An upload mostly
/// waits on the network, not the CPU: on a long link each pack's transfer
/// is bounded by request turns and windows (an SFTP upload moves about one
/// SSH channel window, 2 MiB, per round trip), so only several packs in
/// flight keep the link busy (issue #20's distance bench). Each thread holds
/// at most one finished pack in memory; the local backend's 2 connections
/// keep it at two.
pub(crate) fn upload_threads(connections: usize) -> usize {
    connections.clamp(1, MAX_UPLOAD_THREADS)
}

/// Most uploader threads (and finished packs held in memory) at once.
pub(crate) const MAX_UPLOAD_THREADS: usize = 16;

/// Finished packs waiting for a free uploader (beyond those uploading):
/// none, a full pack is handed over directly (memory: one pack per
/// uploader, like restic's few packs in flight).
const QUEUED_PACKS: usize = 0;

impl OpenPack {
    /// A pack filling `buffer` (cleared), grown to `capacity` at once.
    pub(crate) fn with_buffer(mut buffer: Vec<u8>, capacity: usize) -> Self {
        buffer.clear();
        if buffer.capacity() < capacity {
            buffer.reserve_exact(capacity);
        }
        OpenPack {
            bytes: buffer,
            blobs: Vec::new(),
            header_size: 0,
            hasher: None,
        }
    }

    /// This (empty) pack, hashed as blobs are added: for packs filled ahead
    /// of time, so that storing them later starts with the write.
    pub(crate) fn hashed(mut self) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(&self.bytes);
        self.hasher = Some(hasher);
        self
    }

    /// Append one encrypted blob.
    pub(crate) fn add(
        &mut self,
        blob_type: BlobType,
        id: Id,
        ciphertext: &[u8],
        uncompressed_length: Option<u32>,
    ) -> Result<(), RepoError> {
        let length = u32::try_from(ciphertext.len()).map_err(|_| RepoError::BlobTooLarge {
            blob: id,
            size: ciphertext.len() as u64,
        })?;
        let blob = PackBlob {
            blob_type,
            id,
            offset: self.bytes.len() as u64,
            length,
            uncompressed_length,
        };
        self.header_size += blob.entry_size();
        self.bytes.extend_from_slice(ciphertext);
        if let Some(hasher) = &mut self.hasher {
            hasher.update(ciphertext);
        }
        self.blobs.push(blob);
        Ok(())
    }

    /// Encrypt `plaintext` with `key` straight into the pack (no separate
    /// ciphertext buffer) and append its entry.
    pub(crate) fn add_encrypted(
        &mut self,
        key: &Key,
        blob_type: BlobType,
        id: Id,
        plaintext: &[u8],
        uncompressed_length: Option<u32>,
    ) -> Result<(), RepoError> {
        let offset = self.bytes.len();
        key.encrypt_into(plaintext, &mut self.bytes);
        let length = u32::try_from(self.bytes.len() - offset).map_err(|_| {
            self.bytes.truncate(offset);
            RepoError::BlobTooLarge {
                blob: id,
                size: plaintext.len() as u64,
            }
        })?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(self.bytes.get(offset..).unwrap_or_default());
        }
        let blob = PackBlob {
            blob_type,
            id,
            offset: offset as u64,
            length,
            uncompressed_length,
        };
        self.header_size += blob.entry_size();
        self.blobs.push(blob);
        Ok(())
    }

    /// The same pack without the blobs whose `keep` flag is false.
    pub(crate) fn retain(self, keep: &[bool]) -> Self {
        let mut kept = OpenPack::with_buffer(Vec::new(), self.bytes.len());
        if self.hasher.is_some() {
            kept = kept.hashed();
        }
        for (blob, _) in self.blobs.iter().zip(keep).filter(|(_, k)| **k) {
            let start = usize::try_from(blob.offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(blob.length as usize);
            if let Some(ciphertext) = self.bytes.get(start..end) {
                // Cannot fail: the blob fitted before.
                let _ = kept.add(
                    blob.blob_type,
                    blob.id,
                    ciphertext,
                    blob.uncompressed_length,
                );
            }
        }
        kept
    }

    /// True when the pack should be finished: target size reached, or the
    /// header would exceed restic's limit with one more entry.
    pub(crate) fn is_full(&self, target: u64) -> bool {
        self.bytes.len() as u64 >= target
            || self.header_size + pack::COMPRESSED_ENTRY_SIZE + pack::HEADER_OVERHEAD
                > pack::MAX_HEADER_SIZE
    }
}

/// Uploader threads and the bounded queue feeding them.
pub(crate) struct UploadPool {
    sender: SyncSender<OpenPack>,
    handles: Vec<JoinHandle<()>>,
}

impl UploadPool {
    /// Start `threads` uploaders; the queue holds [`QUEUED_PACKS`], so at
    /// most `threads + QUEUED_PACKS` finished packs are in memory.
    pub(crate) fn start(shared: &Arc<Shared>, threads: usize) -> Self {
        let threads = threads.max(1);
        let (sender, receiver) = sync_channel::<OpenPack>(QUEUED_PACKS);
        let receiver = Arc::new(Mutex::new(receiver));
        let handles = (0..threads)
            .map(|i| {
                let shared = Arc::clone(shared);
                let receiver = Arc::clone(&receiver);
                std::thread::Builder::new()
                    .name(format!("restix-upload-{i}"))
                    .spawn(move || upload_loop(&shared, &receiver))
            })
            .filter_map(Result::ok)
            .collect();
        UploadPool { sender, handles }
    }

    pub(crate) fn sender(&self) -> SyncSender<OpenPack> {
        self.sender.clone()
    }

    /// Close the queue and wait until every queued pack is stored.
    pub(crate) fn finish(self) {
        drop(self.sender);
        for h in self.handles {
            let _ = h.join();
        }
    }
}

fn upload_loop(shared: &Arc<Shared>, receiver: &Mutex<Receiver<OpenPack>>) {
    loop {
        let next = match receiver.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(open) = next else { return };
        if shared.has_upload_error() {
            // Drain without storing: the operation fails anyway.
            continue;
        }
        if let Err(e) = store_pack(shared, open) {
            shared.set_upload_error(e);
        }
    }
}

/// Finish, verify and store one pack, then index its blobs.
pub(crate) fn store_pack(shared: &Shared, open: OpenPack) -> Result<(), RepoError> {
    if open.blobs.is_empty() {
        return Ok(());
    }
    let OpenPack {
        mut bytes,
        blobs,
        hasher,
        ..
    } = open;
    let header = pack::encode_header(&blobs);
    let body = bytes.len();
    pack::append_encrypted_header(&shared.key, &header, &mut bytes);
    let id = match hasher {
        Some(mut hasher) => {
            hasher.update(bytes.get(body..).unwrap_or_default());
            Id(hasher.finalize().into())
        }
        None => Id(Sha256::digest(&bytes).into()),
    };
    verify_pack(shared, &id, &bytes, &blobs)?;
    shared
        .backend
        .write(FileType::Pack, &id.to_hex(), &bytes)
        .map_err(|source| RepoError::Backend { source })?;
    if blobs.iter().all(|b| b.blob_type == BlobType::Tree) {
        // restic caches the packs of metadata blobs as it saves them.
        shared.tree_packs.written(&id, &bytes);
    }
    let size = bytes.len() as u64;
    shared.give_back_pack_buffer(bytes);
    shared.pack_stored(id, size, blobs)
}

/// Check that the header we wrote decodes to the blobs we meant to write
/// (restic additionally decrypts every blob; the header check catches
/// layout bugs at no cost, `verify_blobs` adds the full check).
fn verify_pack(
    shared: &Shared,
    id: &Id,
    bytes: &[u8],
    blobs: &[PackBlob],
) -> Result<(), RepoError> {
    let size = bytes.len() as u64;
    let corrupt = |reason: String| RepoError::PackCorrupt {
        pack: *id,
        reason: format!("verification before upload failed: {reason}"),
    };
    let tail_len = usize::try_from(pack::eager_read_len(size)).unwrap_or(bytes.len());
    let mut tail = bytes
        .get(bytes.len().saturating_sub(tail_len)..)
        .unwrap_or(bytes);
    let header = loop {
        match pack::decode_pack_header(&shared.key, tail, size)
            .map_err(|e| corrupt(e.to_string()))?
        {
            HeaderRead::Complete(h) => break h,
            HeaderRead::NeedTail(n) => {
                let n = usize::try_from(n).unwrap_or(bytes.len());
                if n <= tail.len() {
                    return Err(corrupt("header length loop".into()));
                }
                tail = bytes.get(bytes.len().saturating_sub(n)..).unwrap_or(bytes);
            }
        }
    };
    if header.blobs != blobs {
        return Err(corrupt("header does not list the written blobs".into()));
    }
    if shared.verify_blobs() {
        for b in blobs {
            let start = usize::try_from(b.offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(b.length as usize);
            let ct = bytes
                .get(start..end)
                .ok_or_else(|| corrupt(format!("blob {} out of range", b.id)))?;
            super::decode_blob(&shared.key, &b.id, ct, b.uncompressed_length)
                .map_err(|reason| corrupt(format!("blob {}: {reason}", b.id)))?;
        }
    }
    Ok(())
}
