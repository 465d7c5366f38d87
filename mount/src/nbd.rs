//! A read-only NBD server: one file of a snapshot as a block device, for
//! instant recovery (`qemu-img create -f qcow2 -b nbd://HOST:PORT -F raw`
//! boots a VM from the backup while `qemu-img convert` copies it home).
//!
//! Protocol: the NBD protocol's "fixed newstyle" handshake
//! (NetworkBlockDevice/nbd `doc/proto.md`): options `EXPORT_NAME`, `INFO`,
//! `GO`, `LIST`, `ABORT`, `STRUCTURED_REPLY`, `LIST_META_CONTEXT` and
//! `SET_META_CONTEXT` (`base:allocation`); commands `READ`, `BLOCK_STATUS`,
//! `CACHE`, `FLUSH` and `DISC`, writes refused with `EPERM`. When the client
//! asks for structured replies (qemu always does), reads answer with data
//! and hole chunks, and block status reports the backup's zero blocks as
//! holes, so `qemu-img convert` and `compare` skip them. Requests of one
//! connection are served by several threads, replies in any order (each
//! carries its request's cookie); the export may be opened by many clients
//! at once (`CAN_MULTI_CONN`: it never changes).
//!
//! Written here rather than taken from a crate: of crates.io's NBD servers,
//! `nbd` 0.3 answers `GO`, `INFO` and `STRUCTURED_REPLY` with "unsupported"
//! and serves one request at a time, `tokio-nbd` is GPL-licensed, and
//! `nbdkit` binds the C nbdkit server's plugin interface.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use restix_engine::vfs::{Extent, FileReader, VfsError};

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const FLAG_C_FIXED_NEWSTYLE: u32 = 1;
const FLAG_C_NO_ZEROES: u32 = 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const OPT_LIST_META_CONTEXT: u32 = 9;
const OPT_SET_META_CONTEXT: u32 = 10;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_META_CONTEXT: u32 = 4;
const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
const REP_ERR_INVALID: u32 = (1 << 31) | 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) | 6;

const INFO_EXPORT: u16 = 0;
const INFO_NAME: u16 = 1;
const INFO_DESCRIPTION: u16 = 2;
const INFO_BLOCK_SIZE: u16 = 3;

const TFLAG_HAS_FLAGS: u16 = 1;
const TFLAG_READ_ONLY: u16 = 1 << 1;
const TFLAG_SEND_FLUSH: u16 = 1 << 2;
const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
const TFLAG_SEND_CACHE: u16 = 1 << 10;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_CACHE: u16 = 5;
const CMD_WRITE_ZEROES: u16 = 6;
const CMD_BLOCK_STATUS: u16 = 7;
const CMD_FLAG_REQ_ONE: u16 = 1 << 3;

const REPLY_FLAG_DONE: u16 = 1;
const REPLY_TYPE_NONE: u16 = 0;
const REPLY_TYPE_OFFSET_DATA: u16 = 1;
const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;

const STATE_HOLE: u32 = 1;
const STATE_ZERO: u32 = 2;

const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;
const ENOTSUP: u32 = 95;

/// The only meta context offered.
const BASE_ALLOCATION: &str = "base:allocation";
const BASE_ALLOCATION_ID: u32 = 1;
/// Largest read served (the protocol's customary 32 MiB payload limit).
const MAX_REQUEST: u32 = 32 << 20;
/// Largest option the client may send (names, queries).
const MAX_OPTION: u32 = 64 << 10;
/// Threads serving the requests of one connection.
const WORKERS_PER_CONNECTION: usize = 8;

/// What an export reads from: a snapshot file ([`FileReader`]) or, in
/// tests, anything else with a size.
pub trait BlockSource: Send + Sync + 'static {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset` (within the size).
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), VfsError>;
    /// Data and zero runs of `[offset, offset + length)`.
    fn extents(&self, offset: u64, length: u64) -> Vec<Extent>;
    /// Preferred I/O size (a power of two).
    fn preferred_block(&self) -> u32 {
        4096
    }
    /// Start loading `[offset, offset + length)` (`NBD_CMD_CACHE`).
    fn prefetch(&self, _offset: u64, _length: u64) {}
}

impl BlockSource for FileReader {
    fn size(&self) -> u64 {
        FileReader::size(self)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), VfsError> {
        let n = self.read_at(offset, buf)?;
        // Past the end (cannot happen: requests are checked) reads zeros.
        buf[n..].fill(0);
        Ok(())
    }

    fn extents(&self, offset: u64, length: u64) -> Vec<Extent> {
        FileReader::extents(self, offset, length)
    }

    fn preferred_block(&self) -> u32 {
        self.fixed_block_size()
            .filter(|b| b.is_power_of_two() && (512..=u64::from(MAX_REQUEST)).contains(b))
            .map_or(4096, |b| b as u32)
    }

    fn prefetch(&self, offset: u64, length: u64) {
        let end = offset.saturating_add(length).min(FileReader::size(self));
        let mut at = offset;
        while at < end {
            let index = self.blob_index(at);
            let (start, len) = self.blob_span(index);
            if !self.is_zero_blob(index) {
                let mut one = [0u8; 1];
                // Touching one byte loads (and caches) the whole blob.
                let _ = self.read_at(start, &mut one);
            }
            at = start + len.max(1);
        }
    }
}

/// One export: a name clients ask for (the empty name also works) and
/// what it reads.
pub struct Export {
    /// Export name.
    pub name: String,
    /// Shown by `NBD_OPT_INFO`/`GO` (e.g. `snapshot 1a2b3c4d:/disk.img`).
    pub description: String,
    /// The data.
    pub source: Arc<dyn BlockSource>,
}

impl Export {
    fn matches(&self, name: &[u8]) -> bool {
        name.is_empty() || name == self.name.as_bytes()
    }

    fn transmission_flags(&self) -> u16 {
        TFLAG_HAS_FLAGS
            | TFLAG_READ_ONLY
            | TFLAG_SEND_FLUSH
            | TFLAG_CAN_MULTI_CONN
            | TFLAG_SEND_CACHE
    }
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `HOST:PORT` (TCP).
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl Listen {
    /// `unix:/path` or `/path` → Unix socket; anything else is TCP
    /// (`:10809` means all interfaces, like qemu-nbd's default port).
    pub fn parse(text: &str) -> Listen {
        if let Some(path) = text.strip_prefix("unix:") {
            return Listen::Unix(PathBuf::from(path));
        }
        if text.starts_with('/') || text.starts_with("./") {
            return Listen::Unix(PathBuf::from(text));
        }
        if let Some(port) = text.strip_prefix(':') {
            return Listen::Tcp(format!("0.0.0.0:{port}"));
        }
        Listen::Tcp(text.to_string())
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// A bound NBD server.
pub struct NbdServer {
    listener: Listener,
    export: Arc<Export>,
}

impl NbdServer {
    /// Listen on `listen` (a stale Unix socket file is replaced).
    pub fn bind(listen: &Listen, export: Export) -> io::Result<NbdServer> {
        let listener = match listen {
            Listen::Tcp(addr) => Listener::Tcp(TcpListener::bind(addr)?),
            Listen::Unix(path) => {
                if std::fs::symlink_metadata(path).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                }) {
                    std::fs::remove_file(path)?;
                }
                Listener::Unix(UnixListener::bind(path)?, path.clone())
            }
        };
        Ok(NbdServer {
            listener,
            export: Arc::new(export),
        })
    }

    /// What clients connect to: `nbd://HOST:PORT` or `nbd+unix:///?socket=PATH`.
    pub fn url(&self) -> String {
        let name = &self.export.name;
        match &self.listener {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(addr) if addr.ip().is_unspecified() => {
                    format!("nbd://localhost:{}/{name}", addr.port())
                }
                Ok(addr) => format!("nbd://{addr}/{name}"),
                Err(_) => String::from("nbd://?"),
            },
            Listener::Unix(_, path) => format!("nbd+unix:///{name}?socket={}", path.display()),
        }
    }

    /// Serve clients until the process ends, each on its own threads.
    pub fn serve(&self) -> io::Result<()> {
        loop {
            let (reader, writer): (Box<dyn Read + Send>, Box<dyn Write + Send>) =
                match &self.listener {
                    Listener::Tcp(l) => {
                        let (stream, _) = l.accept()?;
                        let _ = stream.set_nodelay(true);
                        let other = stream.try_clone()?;
                        (Box::new(stream), Box::new(other))
                    }
                    Listener::Unix(l, _) => {
                        let (stream, _) = l.accept()?;
                        let other = stream.try_clone()?;
                        (Box::new(stream), Box::new(other))
                    }
                };
            let export = Arc::clone(&self.export);
            let spawned = std::thread::Builder::new()
                .name("restix-nbd".into())
                .spawn(move || {
                    if let Err(e) = serve_connection(reader, writer, &export) {
                        if !matches!(
                            e.kind(),
                            io::ErrorKind::UnexpectedEof
                                | io::ErrorKind::BrokenPipe
                                | io::ErrorKind::ConnectionReset
                        ) {
                            eprintln!("restix serve-nbd: client: {e}");
                        }
                    }
                });
            if let Err(e) = spawned {
                eprintln!("restix serve-nbd: cannot start a client thread: {e}");
            }
        }
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = &self.listener {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Both ends of a TCP or Unix connection, for tests and [`NbdServer`].
pub fn serve_stream(stream: TcpStream, export: &Arc<Export>) -> io::Result<()> {
    let other = stream.try_clone()?;
    serve_connection(Box::new(stream), Box::new(other), export)
}

/// [`serve_stream`] for a Unix socket.
pub fn serve_unix_stream(stream: UnixStream, export: &Arc<Export>) -> io::Result<()> {
    let other = stream.try_clone()?;
    serve_connection(Box::new(stream), Box::new(other), export)
}

fn read_u16(r: &mut impl Read) -> io::Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn protocol_error(text: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text.to_string())
}

/// What the handshake agreed on.
#[derive(Debug, Default, Clone, Copy)]
struct Session {
    structured: bool,
    base_allocation: bool,
}

/// Handshake, then serve requests until the client disconnects.
fn serve_connection(
    reader: Box<dyn Read + Send>,
    writer: Box<dyn Write + Send>,
    export: &Arc<Export>,
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(256 << 10, reader);
    let mut writer = BufWriter::with_capacity(256 << 10, writer);
    let Some(session) = handshake(&mut reader, &mut writer, export)? else {
        return Ok(());
    };
    writer.flush()?;
    transmission(reader, writer, export, session)
}

fn option_reply(w: &mut impl Write, option: u32, reply: u32, data: &[u8]) -> io::Result<()> {
    w.write_all(&OPTION_REPLY_MAGIC.to_be_bytes())?;
    w.write_all(&option.to_be_bytes())?;
    w.write_all(&reply.to_be_bytes())?;
    w.write_all(&(data.len() as u32).to_be_bytes())?;
    w.write_all(data)
}

/// Split `NBD_OPT_INFO`/`GO` data: export name and requested info types.
fn parse_info_request(data: &[u8]) -> Option<(&[u8], Vec<u16>)> {
    let name_len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let name = data.get(4..4 + name_len)?;
    let rest = data.get(4 + name_len..)?;
    let count = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let list = rest.get(2..2 + 2 * count)?;
    if rest.len() != 2 + 2 * count {
        return None;
    }
    Some((
        name,
        list.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    ))
}

/// Split `NBD_OPT_*_META_CONTEXT` data: export name and queries.
fn parse_meta_request(data: &[u8]) -> Option<(&[u8], Vec<&[u8]>)> {
    let name_len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let name = data.get(4..4 + name_len)?;
    let mut at = 4 + name_len;
    let count = u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?);
    at += 4;
    let mut queries = Vec::new();
    for _ in 0..count {
        let len = u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
        queries.push(data.get(at + 4..at + 4 + len)?);
        at += 4 + len;
    }
    (at == data.len()).then_some((name, queries))
}

/// Fixed newstyle negotiation. `None`: the client left without starting
/// transmission.
fn handshake(
    r: &mut impl Read,
    w: &mut impl Write,
    export: &Export,
) -> io::Result<Option<Session>> {
    w.write_all(&NBDMAGIC.to_be_bytes())?;
    w.write_all(&IHAVEOPT.to_be_bytes())?;
    w.write_all(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes())?;
    w.flush()?;
    let client_flags = read_u32(r)?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(protocol_error("unknown client flags"));
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
    let mut session = Session::default();
    loop {
        w.flush()?;
        if read_u64(r)? != IHAVEOPT {
            return Err(protocol_error("bad option magic"));
        }
        let option = read_u32(r)?;
        let length = read_u32(r)?;
        if length > MAX_OPTION {
            return Err(protocol_error("option too long"));
        }
        let mut data = vec![0u8; length as usize];
        r.read_exact(&mut data)?;
        match option {
            OPT_EXPORT_NAME => {
                if !export.matches(&data) {
                    return Err(protocol_error("unknown export"));
                }
                w.write_all(&export.source.size().to_be_bytes())?;
                w.write_all(&export.transmission_flags().to_be_bytes())?;
                if !no_zeroes {
                    w.write_all(&[0u8; 124])?;
                }
                // EXPORT_NAME predates structured replies' use in reads.
                return Ok(Some(session));
            }
            OPT_ABORT => {
                option_reply(w, option, REP_ACK, &[])?;
                w.flush()?;
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    option_reply(w, option, REP_ERR_INVALID, &[])?;
                    continue;
                }
                let mut entry = (export.name.len() as u32).to_be_bytes().to_vec();
                entry.extend_from_slice(export.name.as_bytes());
                option_reply(w, option, REP_SERVER, &entry)?;
                option_reply(w, option, REP_ACK, &[])?;
            }
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    option_reply(w, option, REP_ERR_INVALID, &[])?;
                    continue;
                }
                session.structured = true;
                option_reply(w, option, REP_ACK, &[])?;
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let Some((name, queries)) = parse_meta_request(&data) else {
                    option_reply(w, option, REP_ERR_INVALID, &[])?;
                    continue;
                };
                if option == OPT_SET_META_CONTEXT && !session.structured {
                    option_reply(w, option, REP_ERR_INVALID, &[])?;
                    continue;
                }
                if !export.matches(name) {
                    option_reply(w, option, REP_ERR_UNKNOWN, &[])?;
                    continue;
                }
                let wanted = if option == OPT_LIST_META_CONTEXT && queries.is_empty() {
                    true
                } else {
                    queries.iter().any(|q| {
                        *q == BASE_ALLOCATION.as_bytes()
                            || (option == OPT_LIST_META_CONTEXT && *q == b"base:")
                    })
                };
                if option == OPT_SET_META_CONTEXT {
                    session.base_allocation = wanted;
                }
                if wanted {
                    let mut reply = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
                    reply.extend_from_slice(BASE_ALLOCATION.as_bytes());
                    option_reply(w, option, REP_META_CONTEXT, &reply)?;
                }
                option_reply(w, option, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let Some((name, requests)) = parse_info_request(&data) else {
                    option_reply(w, option, REP_ERR_INVALID, &[])?;
                    continue;
                };
                if !export.matches(name) {
                    option_reply(w, option, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                }
                let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&export.source.size().to_be_bytes());
                info.extend_from_slice(&export.transmission_flags().to_be_bytes());
                option_reply(w, option, REP_INFO, &info)?;
                for request in requests {
                    let mut info = request.to_be_bytes().to_vec();
                    match request {
                        INFO_NAME => info.extend_from_slice(export.name.as_bytes()),
                        INFO_DESCRIPTION => info.extend_from_slice(export.description.as_bytes()),
                        INFO_BLOCK_SIZE => {
                            info.extend_from_slice(&1u32.to_be_bytes());
                            info.extend_from_slice(&export.source.preferred_block().to_be_bytes());
                            info.extend_from_slice(&MAX_REQUEST.to_be_bytes());
                        }
                        _ => continue,
                    }
                    option_reply(w, option, REP_INFO, &info)?;
                }
                option_reply(w, option, REP_ACK, &[])?;
                if option == OPT_GO {
                    return Ok(Some(session));
                }
            }
            _ => option_reply(w, option, REP_ERR_UNSUP, &[])?,
        }
    }
}

struct Request {
    flags: u16,
    command: u16,
    cookie: u64,
    offset: u64,
    length: u32,
}

/// Read requests and hand them to worker threads; replies go through one
/// locked writer. Returns when the client disconnects.
fn transmission(
    mut reader: BufReader<Box<dyn Read + Send>>,
    writer: BufWriter<Box<dyn Write + Send>>,
    export: &Arc<Export>,
    session: Session,
) -> io::Result<()> {
    let writer = Arc::new(Mutex::new(writer));
    let (queue, jobs) = sync_channel::<Request>(WORKERS_PER_CONNECTION * 2);
    let jobs = Arc::new(Mutex::new(jobs));
    let mut workers = Vec::new();
    for _ in 0..WORKERS_PER_CONNECTION {
        let (jobs, writer, export) = (Arc::clone(&jobs), Arc::clone(&writer), Arc::clone(export));
        workers.push(std::thread::spawn(move || {
            work(&jobs, &writer, &export, session)
        }));
    }
    let result = read_requests(&mut reader, &writer, queue, export, session);
    for worker in workers {
        let _ = worker.join();
    }
    result
}

fn read_requests(
    reader: &mut impl Read,
    writer: &Mutex<BufWriter<Box<dyn Write + Send>>>,
    queue: std::sync::mpsc::SyncSender<Request>,
    export: &Export,
    session: Session,
) -> io::Result<()> {
    loop {
        let magic = match read_u32(reader) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        if magic != REQUEST_MAGIC {
            return Err(protocol_error("bad request magic"));
        }
        let request = Request {
            flags: read_u16(reader)?,
            command: read_u16(reader)?,
            cookie: read_u64(reader)?,
            offset: read_u64(reader)?,
            length: read_u32(reader)?,
        };
        match request.command {
            CMD_DISC => return Ok(()),
            CMD_WRITE => {
                // Read-only: swallow the payload, then refuse.
                if request.length > MAX_REQUEST {
                    return Err(protocol_error("write too large"));
                }
                io::copy(&mut reader.take(u64::from(request.length)), &mut io::sink())?;
                send_error(writer, &request, EPERM, session, "read-only export")?;
            }
            CMD_TRIM | CMD_WRITE_ZEROES => {
                send_error(writer, &request, EPERM, session, "read-only export")?
            }
            CMD_READ | CMD_BLOCK_STATUS | CMD_CACHE | CMD_FLUSH => {
                let end = request.offset.checked_add(u64::from(request.length));
                if end.is_none_or(|end| end > export.source.size()) {
                    send_error(
                        writer,
                        &request,
                        EINVAL,
                        session,
                        "request past the end of the export",
                    )?;
                } else if request.command == CMD_READ && request.length > MAX_REQUEST {
                    send_error(writer, &request, EINVAL, session, "read too large")?;
                } else if request.command == CMD_BLOCK_STATUS && !session.base_allocation {
                    send_error(
                        writer,
                        &request,
                        EINVAL,
                        session,
                        "no meta context negotiated",
                    )?;
                } else if queue.send(request).is_err() {
                    return Ok(());
                }
            }
            _ => send_error(writer, &request, ENOTSUP, session, "unknown command")?,
        }
    }
}

fn work(
    jobs: &Mutex<Receiver<Request>>,
    writer: &Mutex<BufWriter<Box<dyn Write + Send>>>,
    export: &Export,
    session: Session,
) {
    loop {
        let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(request) = next else {
            return;
        };
        let sent = match request.command {
            CMD_READ => serve_read(writer, &request, export, session),
            CMD_BLOCK_STATUS => serve_block_status(writer, &request, export),
            CMD_CACHE => {
                export
                    .source
                    .prefetch(request.offset, u64::from(request.length));
                send_ok(writer, &request, session)
            }
            _ => send_ok(writer, &request, session),
        };
        if sent.is_err() {
            return;
        }
    }
}

type SharedWriter = Mutex<BufWriter<Box<dyn Write + Send>>>;

fn locked(writer: &SharedWriter) -> std::sync::MutexGuard<'_, BufWriter<Box<dyn Write + Send>>> {
    writer.lock().unwrap_or_else(|e| e.into_inner())
}

fn chunk_header(
    w: &mut impl Write,
    flags: u16,
    kind: u16,
    cookie: u64,
    length: u32,
) -> io::Result<()> {
    w.write_all(&STRUCTURED_REPLY_MAGIC.to_be_bytes())?;
    w.write_all(&flags.to_be_bytes())?;
    w.write_all(&kind.to_be_bytes())?;
    w.write_all(&cookie.to_be_bytes())?;
    w.write_all(&length.to_be_bytes())
}

fn simple_header(w: &mut impl Write, error: u32, cookie: u64) -> io::Result<()> {
    w.write_all(&SIMPLE_REPLY_MAGIC.to_be_bytes())?;
    w.write_all(&error.to_be_bytes())?;
    w.write_all(&cookie.to_be_bytes())
}

fn send_ok(writer: &SharedWriter, request: &Request, session: Session) -> io::Result<()> {
    let mut w = locked(writer);
    if session.structured {
        chunk_header(&mut *w, REPLY_FLAG_DONE, REPLY_TYPE_NONE, request.cookie, 0)?;
    } else {
        simple_header(&mut *w, 0, request.cookie)?;
    }
    w.flush()
}

fn send_error(
    writer: &SharedWriter,
    request: &Request,
    error: u32,
    session: Session,
    message: &str,
) -> io::Result<()> {
    let mut w = locked(writer);
    if session.structured {
        let text = &message.as_bytes()[..message.len().min(4096)];
        chunk_header(
            &mut *w,
            REPLY_FLAG_DONE,
            REPLY_TYPE_ERROR,
            request.cookie,
            6 + text.len() as u32,
        )?;
        w.write_all(&error.to_be_bytes())?;
        w.write_all(&(text.len() as u16).to_be_bytes())?;
        w.write_all(text)?;
    } else {
        simple_header(&mut *w, error, request.cookie)?;
    }
    w.flush()
}

fn serve_read(
    writer: &SharedWriter,
    request: &Request,
    export: &Export,
    session: Session,
) -> io::Result<()> {
    let length = u64::from(request.length);
    if length == 0 {
        return send_ok(writer, request, session);
    }
    // Zero runs need no data at all when the client takes structured
    // replies: a hole chunk says "zeros here".
    let extents = if session.structured {
        export.source.extents(request.offset, length)
    } else {
        vec![Extent {
            offset: request.offset,
            length,
            zero: false,
        }]
    };
    let mut chunks: Vec<(Extent, Vec<u8>)> = Vec::with_capacity(extents.len());
    for extent in extents {
        let mut data = Vec::new();
        if !extent.zero || !session.structured {
            data = vec![0u8; extent.length as usize];
            if !extent.zero {
                if let Err(e) = export.source.read_exact_at(extent.offset, &mut data) {
                    eprintln!("restix serve-nbd: read at {}: {e}", extent.offset);
                    return send_error(writer, request, EIO, session, &e.to_string());
                }
            }
        }
        chunks.push((extent, data));
    }
    let mut w = locked(writer);
    if !session.structured {
        simple_header(&mut *w, 0, request.cookie)?;
        for (_, data) in &chunks {
            w.write_all(data)?;
        }
        return w.flush();
    }
    let count = chunks.len();
    for (i, (extent, data)) in chunks.iter().enumerate() {
        let flags = if i + 1 == count { REPLY_FLAG_DONE } else { 0 };
        if extent.zero {
            chunk_header(&mut *w, flags, REPLY_TYPE_OFFSET_HOLE, request.cookie, 12)?;
            w.write_all(&extent.offset.to_be_bytes())?;
            w.write_all(&(extent.length as u32).to_be_bytes())?;
        } else {
            chunk_header(
                &mut *w,
                flags,
                REPLY_TYPE_OFFSET_DATA,
                request.cookie,
                8 + data.len() as u32,
            )?;
            w.write_all(&extent.offset.to_be_bytes())?;
            w.write_all(data)?;
        }
    }
    w.flush()
}

fn serve_block_status(writer: &SharedWriter, request: &Request, export: &Export) -> io::Result<()> {
    let mut extents = export
        .source
        .extents(request.offset, u64::from(request.length).max(1));
    if request.flags & CMD_FLAG_REQ_ONE != 0 {
        extents.truncate(1);
    }
    if extents.is_empty() {
        let session = Session {
            structured: true,
            base_allocation: true,
        };
        return send_error(
            writer,
            request,
            EINVAL,
            session,
            "no extent at the end of the export",
        );
    }
    let mut w = locked(writer);
    chunk_header(
        &mut *w,
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        request.cookie,
        4 + 8 * extents.len() as u32,
    )?;
    w.write_all(&BASE_ALLOCATION_ID.to_be_bytes())?;
    for extent in extents {
        let state = if extent.zero {
            STATE_HOLE | STATE_ZERO
        } else {
            0
        };
        w.write_all(&(extent.length as u32).to_be_bytes())?;
        w.write_all(&state.to_be_bytes())?;
    }
    w.flush()
}

#[cfg(test)]
mod tests;
