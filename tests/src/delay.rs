//! A delay line: a TCP proxy on 127.0.0.1 that adds latency, not a
//! bandwidth limit.
//!
//! The machines this project runs on have no `netem` in their kernel, so a
//! long link is simulated in user space: [`DelayLine::start`] listens on a
//! free port of 127.0.0.1 and forwards every connection to a target address.
//! Each direction of each connection has its own queue of timestamped
//! chunks: a reader thread takes bytes off one socket as soon as they arrive
//! and queues them with the time they may leave (`now + rtt / 2`); a writer
//! thread sends each chunk when its time comes. Bytes are never reordered,
//! merged into or split out of another connection, or changed.
//!
//! What this models: an ideal long link whose TCP windows are large enough
//! never to be the limit (the proxy reads at once, so the client's and the
//! server's sockets see a loopback round trip). What stays a limit is
//! everything above TCP that waits for an answer: SSH channel windows, SFTP
//! request pipelines, HTTP request/response turns, connection set-ups, and
//! how many transfers a program runs at once. Each direction queues at most
//! [`QUEUE_LIMIT`] bytes (a reader stops taking bytes beyond that, as a full
//! TCP window would): at 100 ms one way that still lets 640 MB/s through one
//! connection, more than this harness ever moves.
//!
//! A connection half-closed by one end is half-closed at the other end after
//! the same delay; an error on either socket shuts both down.
//!
//! ```no_run
//! use std::time::Duration;
//! use restix_tests::delay::DelayLine;
//! let line = DelayLine::start("127.0.0.1:22".parse().unwrap(), Duration::from_millis(40)).unwrap();
//! println!("connect to {} for a 40 ms round trip", line.addr());
//! ```

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes queued per direction of one connection at most.
pub const QUEUE_LIMIT: usize = 64 << 20;

/// Bytes taken off a socket per read.
const READ_CHUNK: usize = 256 << 10;

/// What a running delay line has forwarded so far.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    to_target: AtomicU64,
    from_target: AtomicU64,
}

/// A running delay line; stops accepting on drop (connections already open
/// run until one end closes).
pub struct DelayLine {
    addr: SocketAddr,
    target: SocketAddr,
    rtt: Duration,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    acceptor: Option<JoinHandle<()>>,
}

impl DelayLine {
    /// Listen on a free port of 127.0.0.1 and forward to `target`, each
    /// direction delayed by half of `rtt`.
    pub fn start(target: SocketAddr, rtt: Duration) -> io::Result<DelayLine> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let one_way = rtt / 2;
        let acceptor = {
            let stop = Arc::clone(&stop);
            let counters = Arc::clone(&counters);
            std::thread::Builder::new()
                .name(format!("delay-accept-{}", addr.port()))
                .spawn(move || accept_loop(&listener, target, one_way, &stop, &counters))?
        };
        Ok(DelayLine {
            addr,
            target,
            rtt,
            stop,
            counters,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect (127.0.0.1 and a free port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where connections are forwarded.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The round trip the line adds.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Bytes forwarded to the target and back from it so far.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.counters.to_target.load(Ordering::Relaxed),
            self.counters.from_target.load(Ordering::Relaxed),
        )
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    target: SocketAddr,
    one_way: Duration,
    stop: &AtomicBool,
    counters: &Arc<Counters>,
) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        // The connection to the target is made at once (a real link would
        // take a round trip for it: the client's SYN and the first bytes
        // are delayed below, which adds the same).
        let Ok(server) = TcpStream::connect(target) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        for s in [&client, &server] {
            // Nagle would hold back small messages for the peer's ACK.
            let _ = s.set_nodelay(true);
        }
        let to_target = Arc::clone(counters);
        let from_target = Arc::clone(counters);
        let started = start_direction(&client, &server, one_way, move |n| {
            to_target.to_target.fetch_add(n, Ordering::Relaxed);
        })
        .and_then(|()| {
            start_direction(&server, &client, one_way, move |n| {
                from_target.from_target.fetch_add(n, Ordering::Relaxed);
            })
        });
        if started.is_err() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }
}

/// One queued piece of a direction: bytes, or the sender's end of stream.
enum Piece {
    Data(Vec<u8>),
    End,
}

/// The queue of one direction: pieces with the time they may leave.
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

struct QueueState {
    pieces: VecDeque<(Instant, Piece)>,
    bytes: usize,
    /// Set when either side failed: both threads stop.
    broken: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn break_off(&self) {
        self.lock().broken = true;
        self.changed.notify_all();
    }
}

/// Start the reader and writer threads of the direction `from` -> `to`.
fn start_direction(
    from: &TcpStream,
    to: &TcpStream,
    one_way: Duration,
    count: impl Fn(u64) + Send + 'static,
) -> io::Result<()> {
    let queue = Arc::new(Queue {
        state: Mutex::new(QueueState {
            pieces: VecDeque::new(),
            bytes: 0,
            broken: false,
        }),
        changed: Condvar::new(),
    });
    let (reader_from, reader_to) = (from.try_clone()?, to.try_clone()?);
    let (writer_from, writer_to) = (from.try_clone()?, to.try_clone()?);
    let reader_queue = Arc::clone(&queue);
    std::thread::Builder::new()
        .name("delay-read".into())
        .spawn(move || read_side(reader_from, reader_to, one_way, &reader_queue))?;
    std::thread::Builder::new()
        .name("delay-write".into())
        .spawn(move || write_side(writer_from, writer_to, &queue, count))?;
    Ok(())
}

/// Take bytes off `from` as they come and queue them with their due time.
fn read_side(mut from: TcpStream, to: TcpStream, one_way: Duration, queue: &Queue) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        // Wait for room (a full queue stands for a full TCP window).
        {
            let mut state = queue.lock();
            while state.bytes >= QUEUE_LIMIT && !state.broken {
                state = queue
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.broken {
                return;
            }
        }
        let piece = match from.read(&mut buf) {
            Ok(0) => Piece::End,
            Ok(n) => Piece::Data(buf.get(..n).unwrap_or_default().to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                queue.break_off();
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        };
        let end = matches!(piece, Piece::End);
        {
            let mut state = queue.lock();
            if let Piece::Data(d) = &piece {
                state.bytes += d.len();
            }
            state.pieces.push_back((Instant::now() + one_way, piece));
        }
        queue.changed.notify_all();
        if end {
            return;
        }
    }
}

/// Send each queued piece to `to` once its time has come.
fn write_side(from: TcpStream, mut to: TcpStream, queue: &Queue, count: impl Fn(u64)) {
    loop {
        let (due, piece) = {
            let mut state = queue.lock();
            loop {
                if state.broken {
                    return;
                }
                if let Some((due, piece)) = state.pieces.pop_front() {
                    if let Piece::Data(d) = &piece {
                        state.bytes -= d.len();
                    }
                    break (due, piece);
                }
                state = queue
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        // Room in the queue again: the reader may go on.
        queue.changed.notify_all();
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        match piece {
            Piece::Data(data) => {
                if to.write_all(&data).is_err() {
                    queue.break_off();
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
                count(data.len() as u64);
            }
            Piece::End => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers every byte it reads with the same byte
    /// (an echo), and on end of stream closes its side.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let mut reader = conn.try_clone().unwrap();
                    let _ = io::copy(&mut reader, &mut conn);
                    let _ = conn.shutdown(Shutdown::Write);
                });
            }
        });
        addr
    }

    fn pattern(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn bytes_pass_unchanged_in_both_directions() {
        let line = DelayLine::start(echo_server(), Duration::from_millis(4)).unwrap();
        let sent = pattern(5 << 20, 7);
        let mut conn = TcpStream::connect(line.addr()).unwrap();
        let mut reader = conn.try_clone().unwrap();
        let echoed = std::thread::spawn(move || {
            let mut back = Vec::new();
            reader.read_to_end(&mut back).unwrap();
            back
        });
        // Odd-sized writes, so chunk borders fall everywhere.
        for piece in sent.chunks(77_777) {
            conn.write_all(piece).unwrap();
        }
        conn.shutdown(Shutdown::Write).unwrap();
        let back = echoed.join().unwrap();
        assert_eq!(back.len(), sent.len());
        assert!(back == sent, "the echoed bytes differ");
        assert_eq!(line.bytes(), (sent.len() as u64, sent.len() as u64));
        assert_eq!(line.connections(), 1);
    }

    #[test]
    fn each_exchange_waits_at_least_the_round_trip() {
        // Only the lower bound is checked: the line never delivers early.
        // How late it is depends on the machine's load (no timed upper
        // bound in tests; the bench measures speed).
        let rtt = Duration::from_millis(60);
        let line = DelayLine::start(echo_server(), rtt).unwrap();
        let mut conn = TcpStream::connect(line.addr()).unwrap();
        conn.set_nodelay(true).unwrap();
        let mut byte = [0u8; 1];
        for i in 0..3u8 {
            let start = Instant::now();
            conn.write_all(&[i]).unwrap();
            conn.read_exact(&mut byte).unwrap();
            assert_eq!(byte[0], i);
            let took = start.elapsed();
            assert!(took >= rtt, "round trip {took:?} shorter than {rtt:?}");
        }
    }

    #[test]
    fn a_closed_target_closes_the_client() {
        // Nothing listens at the target: the client sees its connection end.
        let unused = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = unused.local_addr().unwrap();
        drop(unused);
        let line = DelayLine::start(target, Duration::from_millis(2)).unwrap();
        let mut conn = TcpStream::connect(line.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(conn.read(&mut buf), Ok(0) | Err(_)));
        assert_eq!(line.connections(), 0);
        assert_eq!(line.target(), target);
        assert_eq!(line.rtt(), Duration::from_millis(2));
    }
}
