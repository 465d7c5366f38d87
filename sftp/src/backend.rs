//! [`SftpBackend`]: the engine's [`Backend`] over a pool of SFTP sessions.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use futures::future::{Either, Ready};
use futures::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use restix_backend::{is_id_name, Backend, BackendError, BackendResult, FileInfo, FileType};
use russh_sftp::client::error::Error as SftpProtoError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

use crate::connection::{Connection, Lane};
use crate::error::SftpError;
use crate::pool::Pool;

/// Most write requests in flight per upload (64 x 32 KiB = 2 MiB filled a
/// loopback link: 281 MB/s on one connection).
const WRITES_IN_FLIGHT: usize = 64;
/// Bytes of write requests in flight per upload: twice OpenSSH's channel
/// window (2 MiB; more only waits in the client's buffers), which covers
/// the round trip of a fast link; bounded so large requests (see
/// `connection::LIMITED_WRITE_CHUNK`) do not copy a whole pack at once.
const WRITE_BYTES_IN_FLIGHT: usize = 4 << 20;
/// Read requests in flight per download: 256 x 64 KiB = 16 MiB, so the
/// largest range the restorer asks for (8 MiB) goes out in one round trip
/// (the client's channel window, 64 MiB, leaves room for it).
const READS_IN_FLIGHT: usize = 256;

/// Uploads at least this large are spread over the connection's lanes
/// (`write_spread`); smaller ones fit one channel window anyway.
const SPREAD_MIN_BYTES: usize = 4 << 20;

/// `data/xx` folders listed at once on one connection (two round trips
/// each: open, one batch of `readdir`s).
const SUBDIR_LISTS_IN_FLIGHT: usize = 32;

/// The folders `create` makes below the repository root (spec: repository layout).
const LAYOUT_DIRS: [&str; 5] = ["data", "index", "keys", "locks", "snapshots"];

/// Why one attempt of an operation failed.
enum AttemptError {
    /// The server answered (not found, permission, ...): the error as is.
    Final(BackendError),
    /// The connection failed: it is dropped, and the error is transient (the
    /// retry wrapper tries again, on a fresh connection).
    Transport(String),
}

type Attempt<T> = Result<T, AttemptError>;

/// Classify an SFTP error for `path`.
fn classify(op: &'static str, path: &str, err: SftpProtoError) -> AttemptError {
    match err {
        SftpProtoError::Status(status) => {
            let kind = match status.status_code {
                StatusCode::NoSuchFile => {
                    return AttemptError::Final(BackendError::NotFound {
                        path: path.to_string(),
                    })
                }
                StatusCode::PermissionDenied => std::io::ErrorKind::PermissionDenied,
                StatusCode::OpUnsupported => std::io::ErrorKind::Unsupported,
                StatusCode::NoConnection | StatusCode::ConnectionLost => {
                    return AttemptError::Transport(format!("{}", status.status_code))
                }
                _ => std::io::ErrorKind::Other,
            };
            let message = if status.error_message.is_empty() {
                status.status_code.to_string()
            } else {
                status.error_message.clone()
            };
            AttemptError::Final(BackendError::Io {
                op,
                path: path.to_string(),
                source: std::io::Error::new(kind, message),
            })
        }
        SftpProtoError::Limited(msg) => AttemptError::Final(BackendError::Other(format!(
            "{op} {path}: server limit: {msg}"
        ))),
        SftpProtoError::Timeout => AttemptError::Transport("request timed out".to_string()),
        SftpProtoError::IO(msg) => AttemptError::Transport(format!("I/O error: {msg}")),
        SftpProtoError::UnexpectedPacket => {
            AttemptError::Transport("unexpected packet from the server".to_string())
        }
        SftpProtoError::UnexpectedBehavior(msg) => {
            AttemptError::Transport(format!("connection lost ({msg})"))
        }
    }
}

fn is_status(err: &SftpProtoError, code: StatusCode) -> bool {
    matches!(err, SftpProtoError::Status(s) if s.status_code == code)
}

/// The SFTP backend. Cheap to share: all methods take `&self` and run in
/// parallel over the pool's connections.
pub struct SftpBackend {
    runtime: tokio::runtime::Runtime,
    pool: Arc<Pool>,
    /// Repository folder on the server, cleaned (`/srv/repo`, `rel/repo`, `.`).
    root: String,
    location: String,
    connections: usize,
    /// Temporary files of uploads cut off by a lost connection; removed
    /// (best effort) by the next write.
    stale_temps: std::sync::Mutex<Vec<String>>,
}

impl SftpBackend {
    pub(crate) fn new(
        runtime: tokio::runtime::Runtime,
        pool: Pool,
        root: String,
        location: String,
        connections: usize,
    ) -> SftpBackend {
        SftpBackend {
            runtime,
            pool: Arc::new(pool),
            root,
            location,
            connections,
            stale_temps: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Dial every connection now (see [`Pool::connect`]): the first in the
    /// foreground, so `open` reports unreachable hosts, host key and
    /// authentication problems at once.
    pub(crate) fn connect_first(&self) -> Result<(), SftpError> {
        self.runtime.block_on(self.pool.connect())
    }

    /// Full path on the server of a repository-relative path.
    fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.root.clone()
        } else if self.root.ends_with('/') {
            format!("{}{rel}", self.root)
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    fn file_path(&self, file_type: FileType, name: &str) -> String {
        self.path(&file_type.relative_path(name))
    }

    /// Run `f` once on a pooled connection. A lost connection is dropped
    /// from the pool and reported as [`BackendError::Transient`]: the retry
    /// wrapper (`restix_backend::retry`) tries again, and the pool dials a
    /// fresh connection then.
    async fn attempt<T, F, Fut>(&self, op: &'static str, path: &str, f: F) -> BackendResult<T>
    where
        F: FnOnce(Arc<Connection>) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let lease = match self.pool.get().await {
            Ok(lease) => lease,
            Err(e) if e.is_retryable() => {
                return Err(BackendError::Transient {
                    op,
                    path: path.to_string(),
                    reason: e.to_string(),
                })
            }
            Err(e) => return Err(BackendError::Other(format!("{op} {path}: {e}"))),
        };
        let conn = lease.conn.clone();
        let outcome = tokio::select! {
            outcome = f(conn.clone()) => outcome,
            () = conn.closed() => {
                Err(AttemptError::Transport("the connection closed".to_string()))
            }
        };
        match outcome {
            Ok(v) => Ok(v),
            Err(AttemptError::Final(e)) => Err(e),
            Err(AttemptError::Transport(reason)) => {
                self.pool.discard(lease);
                Err(BackendError::Transient {
                    op,
                    path: path.to_string(),
                    reason: format!("{reason} (connection to {})", self.pool.target().describe()),
                })
            }
        }
    }

    /// Take the list of temporary files left by cut-off uploads.
    fn take_stale_temps(&self) -> Vec<String> {
        self.stale_temps
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// The temporary file of one upload attempt; on drop, unless disarmed, its
/// name goes to the backend's list of stale temporary files.
struct StaleTemp<'a> {
    list: &'a std::sync::Mutex<Vec<String>>,
    tmp: Option<String>,
}

impl StaleTemp<'_> {
    fn disarm(&mut self) {
        self.tmp = None;
    }
}

impl Drop for StaleTemp<'_> {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            if let Ok(mut list) = self.list.lock() {
                list.push(tmp);
            }
        }
    }
}

/// Random suffix for temporary files (32 hex digits).
fn random_suffix() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Fall back to time and pid: unique enough for a temporary name.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parent_of(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    let i = trimmed.rfind('/')?;
    if i == 0 {
        Some("/")
    } else {
        trimmed.get(..i)
    }
}

/// `mkdir -p` over SFTP: try the folder, create missing parents on ENOENT,
/// accept folders that exist already.
async fn mkdir_all(conn: &Connection, path: &str) -> Attempt<()> {
    let mut missing: Vec<&str> = Vec::new();
    let mut cur = path;
    // Walk up until a mkdir succeeds or the folder exists.
    loop {
        match conn.sftp.mkdir(cur, FileAttributes::empty()).await {
            Ok(_) => break,
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => {
                missing.push(cur);
                match parent_of(cur) {
                    Some(p) if p != cur && !p.is_empty() && p != "." => cur = p,
                    _ => return Err(classify("mkdir", path, e)),
                }
            }
            Err(e) => match conn.sftp.stat(cur).await {
                Ok(attrs) if attrs.attrs.is_dir() => break,
                _ => return Err(classify("mkdir", cur, e)),
            },
        }
    }
    // Now create the missing ones top-down.
    while let Some(dir) = missing.pop() {
        if dir == cur {
            continue;
        }
        if let Err(e) = conn.sftp.mkdir(dir, FileAttributes::empty()).await {
            match conn.sftp.stat(dir).await {
                Ok(attrs) if attrs.attrs.is_dir() => {}
                _ => return Err(classify("mkdir", dir, e)),
            }
        }
    }
    Ok(())
}

/// Make one folder; an existing folder is fine.
async fn mkdir_one(conn: &Connection, path: String) -> Attempt<()> {
    match conn.sftp.mkdir(path.clone(), FileAttributes::empty()).await {
        Ok(_) => Ok(()),
        Err(e) => match conn.sftp.stat(path.clone()).await {
            Ok(attrs) if attrs.attrs.is_dir() => Ok(()),
            _ => Err(classify("mkdir", &path, e)),
        },
    }
}

/// Send the request of `request` now and return what awaits its answer:
/// russh-sftp sends a request when its future is first polled, and the
/// order in which requests go out is the order the server handles them.
async fn send_now<F: Future + Unpin>(mut request: F) -> Either<Ready<F::Output>, F> {
    match futures::poll!(&mut request) {
        Poll::Ready(answer) => Either::Left(futures::future::ready(answer)),
        Poll::Pending => Either::Right(request),
    }
}

/// Upload `data` to `tmp` with many write requests in flight, fsync, close.
///
/// Three round trips for a small file: open; the writes, fsync and close
/// together (the server handles the requests of one session in order, so
/// fsync and close follow the last write); the caller's rename. Big files
/// keep `WRITE_BYTES_IN_FLIGHT` of writes in flight; only the last window
/// overlaps with fsync and close. Every answer is awaited: a failed write
/// or fsync fails the upload, and the caller renames only after success.
async fn upload(conn: &Connection, tmp: &str, data: &[u8]) -> Attempt<()> {
    let attrs = FileAttributes {
        permissions: Some(0o600),
        ..FileAttributes::empty()
    };
    let lanes: Vec<&Lane> = if data.len() >= SPREAD_MIN_BYTES {
        conn.lanes.iter().filter(|l| l.usable()).collect()
    } else {
        Vec::new()
    };
    // A spread upload opens the file on every session at once (one round
    // trip, not two), so none of them may insist on creating it: the
    // temporary name's 128 random bits keep it new instead of O_EXCL.
    let flags = if lanes.is_empty() {
        OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE
    } else {
        OpenFlags::WRITE | OpenFlags::CREATE
    };
    let open_main = async {
        match conn.sftp.open(tmp, flags, attrs.clone()).await {
            Ok(h) => Ok(h.handle),
            // The data/xx folder may be missing (restic creates it lazily too).
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => {
                if let Some(parent) = parent_of(tmp) {
                    mkdir_all(conn, parent).await?;
                }
                conn.sftp
                    .open(tmp, flags, attrs.clone())
                    .await
                    .map(|h| h.handle)
                    .map_err(|e| classify("create", tmp, e))
            }
            Err(e) => Err(classify("create", tmp, e)),
        }
    };
    let open_lanes = futures::future::join_all(lanes.iter().map(|lane| async {
        match lane
            .sftp
            .open(tmp, OpenFlags::WRITE | OpenFlags::CREATE, attrs.clone())
            .await
        {
            Ok(h) => Some(h.handle),
            Err(e) => {
                // The server answered (a missing folder, say): the main
                // session writes this slice. Anything else: retire the lane.
                if !matches!(e, SftpProtoError::Status(_)) {
                    lane.mark_broken();
                }
                None
            }
        }
    }));
    let (handle, lane_handles) = futures::join!(open_main, open_lanes);
    let handle = match handle {
        Ok(h) => h,
        Err(e) => {
            for (lane, h) in lanes.iter().zip(lane_handles) {
                if let Some(h) = h {
                    let _ = lane.sftp.close(h).await;
                }
            }
            return Err(e);
        }
    };
    let chunk = usize::try_from(conn.sizes().await.write_len)
        .unwrap_or(32 * 1024)
        .max(1);
    let finished = if lanes.is_empty() {
        write_and_close(&conn.sftp, handle, 0, data, chunk, conn.fsync).await
    } else {
        let lanes: Vec<(&Lane, Option<String>)> = lanes.into_iter().zip(lane_handles).collect();
        write_spread(conn, handle, data, chunk, lanes).await
    };
    finished.map_err(|(op, e)| classify(op, tmp, e))
}

/// What failed in [`write_and_close`]: the request's name and its error.
type Finish = Result<(), (&'static str, SftpProtoError)>;

/// Write `data` at `offset` of the open `handle` of `sftp`, many requests
/// in flight.
async fn write_slice(
    sftp: &RawSftpSession,
    handle: &str,
    offset: u64,
    data: &[u8],
    chunk: usize,
) -> Result<(), SftpProtoError> {
    stream::iter(data.chunks(chunk).enumerate())
        .map(|(i, piece)| async move {
            let at = offset + (i as u64) * (chunk as u64);
            sftp.write(handle.to_string(), at, piece.to_vec()).await
        })
        .buffer_unordered(writes_in_flight(chunk))
        .try_for_each(|_| futures::future::ready(Ok(())))
        .await
}

fn writes_in_flight(chunk: usize) -> usize {
    (WRITE_BYTES_IN_FLIGHT / chunk.max(1)).clamp(8, WRITES_IN_FLIGHT)
}

/// Write `data` at `offset` of `handle`, then fsync (if `fsync`) and close
/// it. fsync and close go out as soon as the last write has gone out (not
/// when it is answered): the server handles the requests of one session in
/// order, so the fsync follows every write and the close the fsync, and the
/// whole costs one round trip after the data instead of three. Every answer
/// is awaited; any failed request fails the whole (the handle is closed in
/// every case).
async fn write_and_close(
    sftp: &RawSftpSession,
    handle: String,
    offset: u64,
    data: &[u8],
    chunk: usize,
    fsync: bool,
) -> Finish {
    let window = writes_in_flight(chunk);
    let mut in_flight = FuturesUnordered::new();
    let mut failed = None;
    for (i, piece) in data.chunks(chunk).enumerate() {
        while in_flight.len() >= window && failed.is_none() {
            if let Some(Err(e)) = in_flight.next().await {
                failed = Some(e);
            }
        }
        if failed.is_some() {
            break;
        }
        let at = offset + (i as u64) * (chunk as u64);
        let write = Box::pin(sftp.write(handle.clone(), at, piece.to_vec()));
        in_flight.push(send_now(write).await);
    }
    // Every write has gone out (or one failed): fsync and close now.
    let synced = if fsync && failed.is_none() {
        Some(send_now(Box::pin(sftp.fsync(handle.clone()))).await)
    } else {
        None
    };
    let closed = send_now(Box::pin(sftp.close(handle))).await;
    while let Some(answer) = in_flight.next().await {
        if let (Err(e), None) = (answer, &failed) {
            failed = Some(e);
        }
    }
    let synced = match synced {
        Some(synced) => Some(synced.await),
        None => None,
    };
    let closed = closed.await;
    if let Some(e) = failed {
        return Err(("write", e));
    }
    if let Some(synced) = synced {
        synced.map_err(|e| ("fsync", e))?;
    }
    closed.map_err(|e| ("close", e))?;
    Ok(())
}

/// Write a large upload over the connection's own session and its lanes at
/// once (see `connection::LANES_PER_CONNECTION`: each session has its own
/// channel window). Every session had the temporary file opened (see
/// `upload`); each writes its slice, fsyncs and closes its handle, so when
/// all have answered, all the data is on the server's disk and the rename
/// may follow. A slice whose lane could not open the file is written by the
/// main session first; a lane whose request failed is retired (the error
/// fails this attempt, and the retry runs without it).
async fn write_spread(
    conn: &Connection,
    handle: String,
    data: &[u8],
    chunk: usize,
    lanes: Vec<(&Lane, Option<String>)>,
) -> Finish {
    let parts = lanes.len() + 1;
    // Slices on chunk boundaries, the main session's first.
    let per = data.len().div_ceil(parts).div_ceil(chunk) * chunk;
    let slice = |i: usize| {
        let start = (i * per).min(data.len());
        let end = ((i + 1) * per).min(data.len());
        (start as u64, data.get(start..end).unwrap_or(&[]))
    };
    let orphans: Vec<usize> = lanes
        .iter()
        .enumerate()
        .filter(|(_, (_, h))| h.is_none())
        .map(|(i, _)| i + 1)
        .collect();
    let main = async {
        for i in orphans {
            let (offset, part) = slice(i);
            if let Err(e) = write_slice(&conn.sftp, &handle, offset, part, chunk).await {
                let _ = conn.sftp.close(handle.clone()).await;
                return Err(("write", e));
            }
        }
        let (offset, part) = slice(0);
        write_and_close(&conn.sftp, handle.clone(), offset, part, chunk, conn.fsync).await
    };
    let lane_jobs = lanes
        .into_iter()
        .enumerate()
        .filter_map(|(i, (lane, h))| h.map(|h| (i, lane, h)))
        .map(|(i, lane, lane_handle)| {
            let (offset, part) = slice(i + 1);
            async move {
                let finished =
                    write_and_close(&lane.sftp, lane_handle, offset, part, chunk, conn.fsync).await;
                if finished.is_err() {
                    lane.mark_broken();
                }
                finished
            }
        });
    let (main, lanes) = futures::join!(main, futures::future::join_all(lane_jobs));
    main?;
    lanes.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(())
}

/// SSH string encoding: u32 length, bytes.
fn put_ssh_string(buf: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Rename `from` to `to`: `posix-rename@openssh.com` when offered (atomic
/// replace), else plain SFTP rename.
async fn rename(conn: &Connection, from: &str, to: &str) -> Attempt<()> {
    if conn.posix_rename {
        let mut data = Vec::with_capacity(from.len() + to.len() + 8);
        put_ssh_string(&mut data, from);
        put_ssh_string(&mut data, to);
        let reply = conn
            .sftp
            .extended("posix-rename@openssh.com", data)
            .await
            .map_err(|e| classify("rename", to, e))?;
        return match reply {
            russh_sftp::protocol::Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
            russh_sftp::protocol::Packet::Status(s) => {
                Err(classify("rename", to, SftpProtoError::Status(s)))
            }
            _ => Err(AttemptError::Transport(
                "unexpected reply to posix-rename".to_string(),
            )),
        };
    }
    conn.sftp
        .rename(from, to)
        .await
        .map(|_| ())
        .map_err(|e| classify("rename", to, e))
}

/// Read `length` bytes at `offset` with many read requests in flight.
async fn download(
    conn: &Arc<Connection>,
    path: &str,
    offset: u64,
    length: u64,
) -> Attempt<Vec<u8>> {
    let handle = conn
        .sftp
        .open(path, OpenFlags::READ, FileAttributes::empty())
        .await
        .map_err(|e| classify("open", path, e))?
        .handle;
    let result = download_open(conn, &handle, path, offset, length).await;
    close_in_background(conn, handle);
    result
}

/// Read a whole file: open, then its size (`fstat`) and the first read
/// request together, the rest (if any) pipelined. Two round trips for the
/// small files (keys, config, snapshots, index) instead of four.
async fn read_whole(conn: &Arc<Connection>, path: &str) -> Attempt<Vec<u8>> {
    let handle = conn
        .sftp
        .open(path, OpenFlags::READ, FileAttributes::empty())
        .await
        .map_err(|e| classify("open", path, e))?
        .handle;
    let first_len = u32::try_from(conn.sizes().await.read_len).unwrap_or(32 * 1024);
    let result = async {
        let (attrs, first) = futures::join!(
            conn.sftp.fstat(handle.clone()),
            conn.sftp.read(handle.clone(), 0, first_len)
        );
        let size = attrs
            .map_err(|e| classify("stat", path, e))?
            .attrs
            .size
            .unwrap_or(0);
        let mut out = match first {
            Ok(data) => data.data,
            Err(e) if is_status(&e, StatusCode::Eof) => Vec::new(),
            Err(e) => return Err(classify("read", path, e)),
        };
        out.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let have = out.len() as u64;
        if have < size {
            let rest = download_open(conn, &handle, path, have, size - have).await?;
            out.extend_from_slice(&rest);
        }
        Ok(out)
    }
    .await;
    close_in_background(conn, handle);
    result
}

async fn download_open(
    conn: &Connection,
    handle: &str,
    path: &str,
    offset: u64,
    length: u64,
) -> Attempt<Vec<u8>> {
    let chunk = conn.sizes().await.read_len.max(1);
    let capacity = usize::try_from(length).unwrap_or(0).min(1 << 30);
    let mut out: Vec<u8> = Vec::with_capacity(capacity);
    let pieces = (0..length.div_ceil(chunk)).map(|i| {
        let start = i * chunk;
        (offset + start, (length - start).min(chunk))
    });
    let sftp = &conn.sftp;
    let mut replies = stream::iter(pieces)
        .map(|(off, len)| async move {
            let reply = sftp
                .read(
                    handle.to_string(),
                    off,
                    u32::try_from(len).unwrap_or(u32::MAX),
                )
                .await;
            (off, len, reply)
        })
        .buffered(READS_IN_FLIGHT);
    while let Some((off, len, reply)) = replies.next().await {
        let mut got = match reply {
            Ok(data) => {
                let n = (data.data.len() as u64).min(len);
                out.extend_from_slice(data.data.get(..n as usize).unwrap_or(&data.data));
                n
            }
            Err(e) if is_status(&e, StatusCode::Eof) => 0,
            Err(e) => return Err(classify("read", path, e)),
        };
        // A server may answer with less than asked; fetch the rest in order.
        while got < len {
            let want = len - got;
            match sftp
                .read(
                    handle.to_string(),
                    off + got,
                    u32::try_from(want).unwrap_or(u32::MAX),
                )
                .await
            {
                Ok(data) if !data.data.is_empty() => {
                    let n = (data.data.len() as u64).min(want);
                    out.extend_from_slice(data.data.get(..n as usize).unwrap_or(&data.data));
                    got += n;
                }
                Ok(_) => break,
                Err(e) if is_status(&e, StatusCode::Eof) => break,
                Err(e) => return Err(classify("read", path, e)),
            }
        }
        if got < len {
            return Err(AttemptError::Final(BackendError::ShortRead {
                path: path.to_string(),
                offset,
                wanted: length,
                got: out.len() as u64,
            }));
        }
    }
    out.truncate(usize::try_from(length).unwrap_or(usize::MAX));
    Ok(out)
}

/// `readdir` requests sent at once: a server answers them in order (up to
/// 100 names each for OpenSSH) and a folder's end as EOF, so one round trip
/// lists up to a few hundred names instead of one round trip per answer.
const READDIRS_IN_FLIGHT: usize = 4;

/// Entries of one folder: (name, attributes). A missing folder is empty.
async fn read_dir(conn: &Arc<Connection>, dir: &str) -> Attempt<Vec<(String, FileAttributes)>> {
    let handle = match conn.sftp.opendir(dir).await {
        Ok(h) => h.handle,
        Err(e) if is_status(&e, StatusCode::NoSuchFile) => return Ok(Vec::new()),
        Err(e) => return Err(classify("opendir", dir, e)),
    };
    let mut out = Vec::new();
    let listed = 'batches: loop {
        let batch = futures::future::join_all(
            (0..READDIRS_IN_FLIGHT).map(|_| conn.sftp.readdir(handle.clone())),
        )
        .await;
        for answer in batch {
            match answer {
                Ok(name) if name.files.is_empty() => break 'batches Ok(()),
                Ok(name) => out.extend(name.files.into_iter().map(|f| (f.filename, f.attrs))),
                Err(e) if is_status(&e, StatusCode::Eof) => break 'batches Ok(()),
                Err(e) => break 'batches Err(classify("readdir", dir, e)),
            }
        }
    };
    close_in_background(conn, handle);
    listed.map(|()| out)
}

/// Close a handle whose close answer changes nothing (a folder, a file
/// read): nobody waits for it, a round trip less on a long link.
fn close_in_background(conn: &Arc<Connection>, handle: String) {
    let conn = Arc::clone(conn);
    tokio::spawn(async move {
        let _ = conn.sftp.close(handle).await;
    });
}

fn id_files(entries: Vec<(String, FileAttributes)>) -> Vec<FileInfo> {
    entries
        .into_iter()
        .filter(|(name, attrs)| is_id_name(name) && !attrs.is_dir())
        .map(|(name, attrs)| FileInfo {
            name,
            size: attrs.size.unwrap_or(0),
        })
        .collect()
}

impl SftpBackend {
    async fn list_async(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        if file_type == FileType::Config {
            return match self.stat_async(FileType::Config, "config").await {
                Ok(info) => Ok(vec![info]),
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let dir = self.path(file_type.dir_name());
        if file_type != FileType::Pack {
            return self
                .attempt("list", &dir, |conn| {
                    let dir = dir.clone();
                    async move { read_dir(&conn, &dir).await.map(id_files) }
                })
                .await;
        }
        // data/: list the 2-hex subfolders, several at a time on one connection.
        self.attempt("list", &dir, |conn| {
            let dir = dir.clone();
            async move {
                let subdirs: Vec<String> = read_dir(&conn, &dir)
                    .await?
                    .into_iter()
                    .filter(|(name, attrs)| {
                        // Servers that send no attributes in readdir get
                        // the benefit of the doubt.
                        name.len() == 2
                            && name.bytes().all(|b| b.is_ascii_hexdigit())
                            && (attrs.permissions.is_none() || attrs.is_dir())
                    })
                    .map(|(name, _)| format!("{dir}/{name}"))
                    .collect();
                let conn = &conn;
                let lists: Vec<Vec<FileInfo>> = stream::iter(subdirs)
                    .map(|sub| async move { read_dir(conn, &sub).await.map(id_files) })
                    .buffer_unordered(SUBDIR_LISTS_IN_FLIGHT)
                    .try_collect()
                    .await?;
                Ok(lists.into_iter().flatten().collect())
            }
        })
        .await
    }

    async fn stat_async(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        let path = self.file_path(file_type, name);
        self.attempt("stat", &path, |conn| {
            let path = path.clone();
            async move {
                let attrs = conn
                    .sftp
                    .stat(path.clone())
                    .await
                    .map_err(|e| classify("stat", &path, e))?;
                Ok(FileInfo {
                    name: name.to_string(),
                    size: attrs.attrs.size.unwrap_or(0),
                })
            }
        })
        .await
    }

    async fn create_async(&self) -> BackendResult<()> {
        match self.stat_async(FileType::Config, "config").await {
            Ok(_) => {
                return Err(BackendError::AlreadyExists {
                    path: self.path("config"),
                })
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let root = self.root.clone();
        let mut dirs: Vec<String> = LAYOUT_DIRS.iter().map(|d| self.path(d)).collect();
        dirs.extend((0..=255u8).map(|i| self.path(&format!("data/{i:02x}"))));
        self.attempt("create", &root, |conn| {
            let root = root.clone();
            let dirs = dirs.clone();
            async move {
                if root != "." && root != "/" {
                    mkdir_all(&conn, &root).await?;
                }
                let conn = &conn;
                // Top-level folders first, then data/xx, many in flight.
                let (top, subs) = dirs.split_at(LAYOUT_DIRS.len().min(dirs.len()));
                for group in [top, subs] {
                    stream::iter(group.iter().cloned())
                        .map(|d| async move { mkdir_one(conn, d).await })
                        .buffer_unordered(32)
                        .try_collect::<Vec<()>>()
                        .await?;
                }
                Ok(())
            }
        })
        .await
    }

    async fn write_async(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        let path = self.file_path(file_type, name);
        let path = path.as_str();
        self.attempt("write", path, |conn| async move {
            self.store_once(&conn, path, data, true).await.map(|_| ())
        })
        .await
    }

    /// Upload `data` to a fresh temporary name beside `path` (one attempt,
    /// as `write_async` without its rename); the temporary name on success,
    /// for [`SftpBackend::write_in_order_async`] to rename later.
    async fn upload_temp(&self, path: &str, data: &[u8]) -> BackendResult<String> {
        self.attempt("write", path, |conn| async move {
            self.store_once(&conn, path, data, false).await
        })
        .await
    }

    /// One attempt of a write on `conn`: remove the stale temporary files
    /// of earlier attempts, upload `data` to a fresh temporary name beside
    /// `path` and, with `publish`, rename it into place. The temporary name
    /// (gone when published). A failed attempt leaves no temporary file, or,
    /// when the connection was lost, its name in the stale list for the
    /// next write to remove.
    async fn store_once(
        &self,
        conn: &Connection,
        path: &str,
        data: &[u8],
        publish: bool,
    ) -> Attempt<String> {
        for tmp in self.take_stale_temps() {
            let _ = conn.sftp.remove(tmp).await;
        }
        let tmp = format!("{path}-tmp-{}", random_suffix());
        // Armed until the attempt ends with an answer from the server: a
        // lost connection or a cancelled attempt (the connection closed at
        // any await point) leaves the name for the next write to remove.
        let mut guard = StaleTemp {
            list: &self.stale_temps,
            tmp: Some(tmp.clone()),
        };
        let outcome = async {
            upload(conn, &tmp, data).await?;
            if publish {
                rename(conn, &tmp, path).await?;
            }
            Ok(())
        }
        .await;
        match &outcome {
            Ok(()) => guard.disarm(),
            Err(AttemptError::Final(_)) => {
                guard.disarm();
                let _ = conn.sftp.remove(tmp.clone()).await;
            }
            Err(AttemptError::Transport(_)) => {}
        }
        outcome.map(|()| tmp)
    }

    /// Remove temporary files of `write_in_order_async` that will not be
    /// renamed; those that cannot be removed now go to the stale list.
    async fn remove_temps(&self, temps: impl IntoIterator<Item = String>) {
        let removals = temps.into_iter().map(|tmp| async move {
            let removed = self
                .attempt("remove", &tmp, |conn| {
                    let tmp = tmp.clone();
                    async move {
                        conn.sftp
                            .remove(tmp.clone())
                            .await
                            .map(|_| ())
                            .map_err(|e| classify("remove", &tmp, e))
                    }
                })
                .await;
            if removed.is_err_and(|e| !e.is_not_found()) {
                if let Ok(mut list) = self.stale_temps.lock() {
                    list.push(tmp);
                }
            }
        });
        futures::future::join_all(removals).await;
    }

    /// [`Backend::write_in_order`]: every file uploaded to its temporary
    /// name at once (over the pool's connections), and only when all of
    /// them are stored, renamed into place one after another, each rename
    /// answered before the next goes out. For a backup's index files and
    /// snapshot that is two round trips fewer than writing them one by one
    /// (open and write+fsync+close of the snapshot overlap the index's).
    /// A failed upload renames nothing; a failed rename leaves the files
    /// before it visible and none after it. Unrenamed temporary files are
    /// removed.
    async fn write_in_order_async(&self, files: &[(FileType, &str, &[u8])]) -> BackendResult<()> {
        let paths: Vec<String> = files
            .iter()
            .map(|(file_type, name, _)| self.file_path(*file_type, name))
            .collect();
        let uploads = futures::future::join_all(
            paths
                .iter()
                .zip(files)
                .map(|(path, (_, _, data))| self.upload_temp(path, data)),
        )
        .await;
        let mut temps = Vec::with_capacity(uploads.len());
        let mut failed = None;
        for upload in uploads {
            match upload {
                Ok(tmp) => temps.push(tmp),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            self.remove_temps(temps).await;
            return Err(e);
        }
        let mut pending = temps.into_iter().zip(&paths);
        while let Some((tmp, path)) = pending.next() {
            let renamed = self
                .attempt("rename", path, |conn| {
                    let tmp = tmp.clone();
                    async move { rename(&conn, &tmp, path).await }
                })
                .await;
            if let Err(e) = renamed {
                // This one may or may not have been renamed (a lost answer):
                // its temporary name goes too, which fails harmlessly then.
                let left = std::iter::once(tmp).chain(pending.map(|(tmp, _)| tmp));
                self.remove_temps(left.collect::<Vec<_>>()).await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn read_range_async(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: Option<u64>,
    ) -> BackendResult<Vec<u8>> {
        let path = self.file_path(file_type, name);
        self.attempt("read", &path, |conn| {
            let path = path.clone();
            async move {
                let Some(length) = length else {
                    return read_whole(&conn, &path).await;
                };
                if length == 0 && offset == 0 {
                    // Still report a missing file as NotFound.
                    conn.sftp
                        .stat(path.clone())
                        .await
                        .map_err(|e| classify("stat", &path, e))?;
                    return Ok(Vec::new());
                }
                download(&conn, &path, offset, length).await
            }
        })
        .await
    }

    async fn remove_async(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        let path = self.file_path(file_type, name);
        self.attempt("remove", &path, |conn| {
            let path = path.clone();
            async move {
                conn.sftp
                    .remove(path.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("remove", &path, e))
            }
        })
        .await
    }
}

impl Backend for SftpBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> BackendResult<()> {
        self.runtime.block_on(self.create_async())
    }

    fn list(&self, file_type: FileType) -> BackendResult<Vec<FileInfo>> {
        self.runtime.block_on(self.list_async(file_type))
    }

    fn read(&self, file_type: FileType, name: &str) -> BackendResult<Vec<u8>> {
        self.runtime
            .block_on(self.read_range_async(file_type, name, 0, None))
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        length: u64,
    ) -> BackendResult<Vec<u8>> {
        self.runtime
            .block_on(self.read_range_async(file_type, name, offset, Some(length)))
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> BackendResult<()> {
        self.runtime
            .block_on(self.write_async(file_type, name, data))
    }

    fn write_in_order(&self, files: &[(FileType, &str, &[u8])]) -> BackendResult<()> {
        self.runtime.block_on(self.write_in_order_async(files))
    }

    fn remove(&self, file_type: FileType, name: &str) -> BackendResult<()> {
        self.runtime.block_on(self.remove_async(file_type, name))
    }

    fn stat(&self, file_type: FileType, name: &str) -> BackendResult<FileInfo> {
        self.runtime.block_on(self.stat_async(file_type, name))
    }

    fn connections(&self) -> usize {
        self.connections
    }
    /// The server renames into place before it answers; later listings (on
    /// any connection) read the same file system.
    fn list_after_write_consistent(&self) -> bool {
        true
    }
}

impl Drop for SftpBackend {
    fn drop(&mut self) {
        // Close sessions while the runtime still runs, so subprocesses see EOF.
        // (Not possible from inside another runtime: then the runtime's own
        // drop ends the sessions.)
        if tokio::runtime::Handle::try_current().is_err() {
            let pool = self.pool.clone();
            self.runtime.block_on(async move { pool.close() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(parent_of("/a/b/c"), Some("/a/b"));
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("a/b"), Some("a"));
        assert_eq!(parent_of("a"), None);
    }

    #[test]
    fn suffix_is_hex() {
        let s = random_suffix();
        assert_eq!(s.len(), 32);
        assert!(s.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(s, random_suffix());
    }

    /// OpenSSH's SFTP server, run directly as `sftp.command` (the upload
    /// path is the same as over SSH) with a file size limit of 32 KiB, so a
    /// write beyond it fails (EFBIG; SIGXFSZ ignored, so the server lives on).
    const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

    /// A created repository in a temporary folder (`<dir>/repo`) behind a
    /// size-limited sftp-server; `None` (reported as skipped) without one.
    fn size_limited_repository() -> Option<(tempfile::TempDir, SftpBackend)> {
        if !std::path::Path::new(SFTP_SERVER).exists() {
            restix_testkit::skip("sftp-server", "apt-get install openssh-server");
            return None;
        }
        let dir = tempfile::tempdir().expect("temporary folder");
        let b = open_size_limited(&dir.path().join("repo"));
        b.create().expect("create");
        Some((dir, b))
    }

    fn open_size_limited(repo: &std::path::Path) -> SftpBackend {
        let command = format!("sh -c \"trap '' XFSZ; ulimit -f 64; exec {SFTP_SERVER}\"");
        let opts = crate::SftpOptions::from_pairs([("sftp.command", command.as_str())])
            .expect("valid options");
        let location = crate::SftpLocation::parse(&format!("sftp:ignored:{}", repo.display()))
            .expect("valid location");
        crate::open(&location, &opts).expect("sftp-server starts")
    }

    /// Names in a folder of the repository (none when it is missing).
    fn names_in(dir: &std::path::Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// A failed write fails the upload also when its answer comes after
    /// fsync and close went out (the last window of writes): no rename, and
    /// the temporary file is removed.
    #[test]
    fn failed_write_fails_the_upload_and_leaves_no_file() {
        let Some((dir, b)) = size_limited_repository() else {
            return;
        };
        let repo = dir.path().join("repo");
        let small = vec![7u8; 1000];
        let ok = "11".repeat(32);
        b.write(FileType::Snapshot, &ok, &small)
            .expect("small write");
        assert_eq!(b.read(FileType::Snapshot, &ok).expect("read"), small);

        // One window of writes (tail overlaps fsync/close), then several.
        for (file_type, len) in [(FileType::Snapshot, 100 << 10), (FileType::Pack, 8 << 20)] {
            let name = "22".repeat(32);
            let err = b
                .write(file_type, &name, &vec![1u8; len])
                .expect_err("writes beyond the file size limit fail");
            assert!(err.to_string().starts_with("write "), "{err}");
            let missing = b.stat(file_type, &name).expect_err("not renamed");
            assert!(missing.is_not_found(), "{missing}");
        }
        assert_eq!(names_in(&repo.join("snapshots")), vec![ok]);
        assert_eq!(
            names_in(&repo.join("data").join("22")),
            Vec::<String>::new()
        );
    }

    /// `write_in_order` stores every file, each with its content; a file
    /// that fails to upload (beyond the size limit) makes none visible; a
    /// file whose rename fails (its name is taken by a folder) leaves the
    /// files before it visible and none after it; no temporary file stays.
    #[test]
    fn ordered_writes_publish_in_order_or_not_at_all() {
        let Some((dir, b)) = size_limited_repository() else {
            return;
        };
        let repo = dir.path().join("repo");
        let name = |n: u8| format!("{n:02x}").repeat(32);
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };

        let (index, pack, snapshot) = (name(1), name(2), name(3));
        let files: [(FileType, &str, &[u8]); 3] = [
            (FileType::Index, &index, b"index one"),
            (FileType::Pack, &pack, &[9u8; 5000]),
            (FileType::Snapshot, &snapshot, b"snapshot three"),
        ];
        b.write_in_order(&files).expect("ordered write");
        for (file_type, name, data) in files {
            assert_eq!(b.read(file_type, name).expect("read"), data);
        }
        // Again with the same content: harmless (a retry does this).
        b.write_in_order(&files).expect("the same files again");
        assert_eq!(names_in(&repo.join("index")), vec![index.clone()]);

        // The second upload fails (over the size limit): nothing renamed.
        let (index2, too_big, snapshot2) = (name(4), name(5), name(6));
        let err = b
            .write_in_order(&[
                (FileType::Index, &index2, b"index four"),
                (FileType::Pack, &too_big, &vec![1u8; 100 << 10]),
                (FileType::Snapshot, &snapshot2, b"snapshot six"),
            ])
            .expect_err("an upload beyond the file size limit fails");
        assert!(err.to_string().starts_with("write "), "{err}");
        assert_eq!(names_in(&repo.join("index")), vec![index.clone()]);
        assert_eq!(
            names_in(&repo.join("data").join("05")),
            Vec::<String>::new()
        );
        assert_eq!(names_in(&repo.join("snapshots")), vec![snapshot.clone()]);

        // The second rename fails: the first file is visible, the third not.
        let (index7, blocked, index9) = (name(7), name(8), name(9));
        let taken = repo.join("snapshots").join(&blocked);
        std::fs::create_dir_all(taken.join("inside")).expect("a folder in the way");
        b.write_in_order(&[
            (FileType::Index, &index7, b"index seven"),
            (FileType::Snapshot, &blocked, b"snapshot eight"),
            (FileType::Index, &index9, b"index nine"),
        ])
        .expect_err("renaming onto a non-empty folder fails");
        assert_eq!(
            b.read(FileType::Index, &index7).expect("read"),
            b"index seven"
        );
        assert_eq!(
            sorted(names_in(&repo.join("index"))),
            sorted(vec![index, index7])
        );
        assert_eq!(
            sorted(names_in(&repo.join("snapshots"))),
            sorted(vec![snapshot, blocked])
        );
        assert!(taken.join("inside").is_dir(), "the folder is untouched");
    }

    #[test]
    fn ssh_string() {
        let mut b = Vec::new();
        put_ssh_string(&mut b, "ab");
        assert_eq!(b, [0, 0, 0, 2, b'a', b'b']);
    }
}
