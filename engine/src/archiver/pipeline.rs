//! The large-file pipeline: the calling pool thread reads the file in
//! windows and chunks them (exactly as restic, spec: restic-format §15.8);
//! each chunk becomes a task on the archiver's thread pool that hashes it
//! and stores it (compress, encrypt, pack). Reading and chunking the next
//! window overlaps with the work on the previous ones, and every thread of
//! the pool (the producer included, whenever it waits) hashes and stores.
//!
//! Memory is capped by bytes, not by counts: at most [`WINDOWS_IN_FLIGHT`]
//! windows exist at once (read, being chunked, or with chunks still being
//! stored); window buffers are reused, so the allocator does not grow.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use restix_chunker::{Chunker, OwnedWindow, ParallelChunker, WindowStream};
use restix_repo_format::Id;

use crate::repository::RepoError;

/// Windows alive at once: one being read and chunked, one whose chunks the
/// pool is still storing.
pub(super) const WINDOWS_IN_FLIGHT: usize = 2;

/// Window size for `threads` pool threads: 2 MiB per thread (with two
/// windows in flight, four average 1 MiB chunks per thread), at most
/// 64 MiB; [`WindowStream`] raises it to its minimum (12 MiB: a maximal
/// chunk and a few average ones).
pub(super) fn window_size(threads: usize) -> usize {
    threads.saturating_mul(2 << 20).min(64 << 20)
}

/// Threads that chunk one window: chunking costs about a tenth of hashing,
/// compressing and encrypting, so one producer keeps about eight workers
/// busy; more threads get more chunking segments.
pub(super) fn chunking_threads(threads: usize) -> usize {
    (threads / 4).max(1)
}

use crate::poison::lock;

/// A byte budget for windows, with a few free buffers kept for reuse.
struct WindowBudget {
    state: Mutex<BudgetState>,
    released: Condvar,
    cap: usize,
}

struct BudgetState {
    used: usize,
    free: Vec<Vec<u8>>,
}

impl WindowBudget {
    fn new(cap: usize) -> Self {
        WindowBudget {
            state: Mutex::new(BudgetState {
                used: 0,
                free: Vec::new(),
            }),
            released: Condvar::new(),
            cap,
        }
    }

    /// Take `bytes` of the budget and a buffer to fill. While the budget is
    /// spent, `help` runs other pending work (returns false when there was
    /// none; then this waits for a release).
    fn acquire(&self, bytes: usize, mut help: impl FnMut() -> bool) -> Vec<u8> {
        loop {
            {
                let mut state = lock(&self.state);
                if state.used == 0 || state.used.saturating_add(bytes) <= self.cap {
                    state.used += bytes;
                    return state.free.pop().unwrap_or_default();
                }
            }
            if !help() {
                let state = lock(&self.state);
                if state.used != 0 && state.used.saturating_add(bytes) > self.cap {
                    // Timed: a release between the check above and this wait
                    // must not be missed for long.
                    let _ = self.released.wait_timeout(state, Duration::from_millis(2));
                }
            }
        }
    }

    fn release(&self, bytes: usize, buffer: Vec<u8>) {
        let mut state = lock(&self.state);
        state.used = state.used.saturating_sub(bytes);
        if buffer.capacity() > 0 && state.free.len() < WINDOWS_IN_FLIGHT {
            state.free.push(buffer);
        }
        drop(state);
        self.released.notify_all();
    }
}

/// A window shared by its chunk tasks; gives its bytes back to the budget
/// when the last task is done.
struct SharedWindow<'a> {
    window: OwnedWindow,
    budget: &'a WindowBudget,
    bytes: usize,
}

impl Drop for SharedWindow<'_> {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.window.data);
        self.budget.release(self.bytes, buffer);
    }
}

/// Large reads of a file front to back, split into positional reads on
/// several threads: copying from the page cache is the one part of the
/// producer's work that chunking threads cannot share otherwise.
pub(super) struct ParallelFileReader {
    file: File,
    position: u64,
    threads: usize,
}

/// Smallest piece one thread reads.
const READ_PIECE: usize = 4 << 20;

impl ParallelFileReader {
    pub(super) fn new(file: File, threads: usize) -> Self {
        ParallelFileReader {
            file,
            position: 0,
            threads: threads.max(1),
        }
    }
}

/// Fill `buf` from `offset` until it is full or the file ends; returns the
/// bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let free = buf.get_mut(filled..).unwrap_or_default();
        match file.read_at(free, offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Read for ParallelFileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let pieces = self.threads.min(buf.len() / READ_PIECE);
        if pieces <= 1 {
            let n = self.file.read_at(buf, self.position)?;
            self.position += n as u64;
            return Ok(n);
        }
        let piece_len = buf.len().div_ceil(pieces);
        let position = self.position;
        let file = &self.file;
        let results: Vec<(usize, io::Result<usize>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = buf
                .chunks_mut(piece_len)
                .enumerate()
                .map(|(i, piece)| {
                    let wanted = piece.len();
                    let offset = position + (i * piece_len) as u64;
                    (
                        wanted,
                        scope.spawn(move || read_full_at(file, piece, offset)),
                    )
                })
                .collect();
            handles
                .into_iter()
                .map(|(wanted, h)| {
                    let result = h
                        .join()
                        .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")));
                    (wanted, result)
                })
                .collect()
        });
        // Only the contiguous prefix counts: a short piece is the end of
        // the file (bytes after it, from a file growing meanwhile, are read
        // again by the next call).
        let mut total = 0;
        for (wanted, result) in results {
            let got = result?;
            total += got;
            if got < wanted {
                break;
            }
        }
        self.position += total as u64;
        Ok(total)
    }
}

/// Result of one chunk: (id, plaintext added, stored bytes), and its length.
type ChunkResult = (Result<(Id, u64, u64), RepoError>, u64);

/// What the pipeline produced for one file.
pub(super) struct PipelineOutput {
    /// Blob IDs in file order.
    pub ids: Vec<Id>,
    /// File size read.
    pub size: u64,
    /// Plaintext bytes of new blobs.
    pub added: u64,
    /// Stored bytes of new blobs.
    pub stored: u64,
}

/// Errors of the pipeline.
pub(super) enum PipelineError {
    Io(std::io::Error),
    Repo(RepoError),
}

/// Chunk `reader` and store every chunk with `save_chunk` on the current
/// rayon pool (the caller must run on it); `done(bytes)` is called per
/// stored chunk.
pub(super) fn store_stream<R, S, D>(
    chunker: &Chunker,
    threads: usize,
    reader: R,
    save_chunk: &S,
    done: &D,
) -> Result<PipelineOutput, PipelineError>
where
    R: Read,
    S: Fn(&[u8]) -> Result<(Id, u64, u64), RepoError> + Sync,
    D: Fn(u64) + Sync,
{
    let parallel = ParallelChunker::new(chunker.clone(), chunking_threads(threads));
    let mut stream = WindowStream::new(parallel, reader, window_size(threads));
    let window_bytes = stream.window();
    let budget = WindowBudget::new(window_bytes.saturating_mul(WINDOWS_IN_FLIGHT));
    let results: Mutex<Vec<Option<ChunkResult>>> = Mutex::new(Vec::new());
    let failed = AtomicBool::new(false);
    let mut read_error = None;
    rayon::in_place_scope(|scope| loop {
        if failed.load(Ordering::Relaxed) {
            break;
        }
        let buffer = budget.acquire(window_bytes, || {
            matches!(rayon::yield_now(), Some(rayon::Yield::Executed))
        });
        let window = match stream.next_window(buffer) {
            Ok(Some(window)) => window,
            Ok(None) => {
                budget.release(window_bytes, Vec::new());
                break;
            }
            Err(e) => {
                budget.release(window_bytes, Vec::new());
                read_error = Some(e);
                break;
            }
        };
        let count = window.chunks.len();
        let first = {
            let mut results = lock(&results);
            let first = results.len();
            results.resize_with(first + count, || None);
            first
        };
        let shared = Arc::new(SharedWindow {
            window,
            budget: &budget,
            bytes: window_bytes,
        });
        for index in 0..count {
            let shared = Arc::clone(&shared);
            let (results, failed) = (&results, &failed);
            scope.spawn(move |_| {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let Some(boundary) = shared.window.chunks.get(index) else {
                    return;
                };
                let data = shared.window.chunk_data(boundary);
                let len = data.len() as u64;
                let result = save_chunk(data);
                drop(shared);
                match &result {
                    Ok(_) => done(len),
                    Err(_) => failed.store(true, Ordering::Relaxed),
                }
                if let Some(slot) = lock(results).get_mut(first + index) {
                    *slot = Some((result, len));
                }
            });
        }
    });
    if let Some(e) = read_error {
        return Err(PipelineError::Io(e));
    }
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut output = PipelineOutput {
        ids: Vec::with_capacity(results.len()),
        size: 0,
        added: 0,
        stored: 0,
    };
    let mut skipped = false;
    for slot in results {
        match slot {
            Some((Ok((id, added, stored)), len)) => {
                output.ids.push(id);
                output.size += len;
                output.added += added;
                output.stored += stored;
            }
            Some((Err(e), _)) => return Err(PipelineError::Repo(e)),
            None => skipped = true,
        }
    }
    if skipped {
        // Only a failed chunk makes the others skip; it was reported above.
        return Err(PipelineError::Repo(RepoError::UploadFailed(
            "storing a chunk failed".into(),
        )));
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn pipeline_keeps_file_order_and_bounds_windows() {
        let polynomial = "3da3358b4dc173".parse().unwrap();
        let chunker = Chunker::new(polynomial).unwrap();
        let mut seed = 99u64;
        let data: Vec<u8> = (0..(50 << 20))
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect();
        let expected: Vec<Id> = chunker
            .chunk_slice(&data)
            .iter()
            .map(|c| Id(Sha256::digest(&data[c.offset..c.end()]).into()))
            .collect();
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let save = |d: &[u8]| Ok((Id(Sha256::digest(d).into()), d.len() as u64, 1));
            let out = pool
                .install(|| store_stream(&chunker, threads, &data[..], &save, &|_| {}))
                .ok()
                .unwrap();
            assert_eq!(out.ids, expected);
            assert_eq!(out.size, data.len() as u64);
            assert_eq!(out.added, data.len() as u64);
        }
    }
}
