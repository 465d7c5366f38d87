//! The server against a small client written from the protocol text, over
//! a Unix socket pair. qemu's own client is exercised in tests/nbd_*.rs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use super::*;

/// 3 blocks of 4 KiB: data, zeros, data.
struct Memory(Vec<u8>);

impl BlockSource for Memory {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), VfsError> {
        let at = offset as usize;
        buf.copy_from_slice(&self.0[at..at + buf.len()]);
        Ok(())
    }
    fn extents(&self, offset: u64, length: u64) -> Vec<Extent> {
        let end = (offset + length).min(self.size());
        let mut out: Vec<Extent> = Vec::new();
        let mut at = offset;
        while at < end {
            let stop = ((at / 4096 + 1) * 4096).min(end);
            let zero = at / 4096 == 1;
            match out.last_mut() {
                Some(last) if last.zero == zero => last.length += stop - at,
                _ => out.push(Extent {
                    offset: at,
                    length: stop - at,
                    zero,
                }),
            }
            at = stop;
        }
        out
    }
}

fn data() -> Vec<u8> {
    let mut d: Vec<u8> = (0..12288u32).map(|i| (i % 251) as u8 + 1).collect();
    d[4096..8192].fill(0);
    d
}

fn start() -> UnixStream {
    let (client, server) = UnixStream::pair().unwrap();
    let export = Arc::new(Export {
        name: "disk".into(),
        description: "test".into(),
        source: Arc::new(Memory(data())),
    });
    std::thread::spawn(move || serve_unix_stream(server, &export));
    client
}

fn get<const N: usize>(c: &mut UnixStream) -> [u8; N] {
    let mut b = [0u8; N];
    c.read_exact(&mut b).unwrap();
    b
}

fn option(c: &mut UnixStream, option: u32, data: &[u8]) {
    c.write_all(&IHAVEOPT.to_be_bytes()).unwrap();
    c.write_all(&option.to_be_bytes()).unwrap();
    c.write_all(&(data.len() as u32).to_be_bytes()).unwrap();
    c.write_all(data).unwrap();
}

/// One option reply: (reply type, data).
fn option_reply(c: &mut UnixStream, want_option: u32) -> (u32, Vec<u8>) {
    assert_eq!(u64::from_be_bytes(get(c)), OPTION_REPLY_MAGIC);
    assert_eq!(u32::from_be_bytes(get(c)), want_option);
    let kind = u32::from_be_bytes(get(c));
    let len = u32::from_be_bytes(get(c)) as usize;
    let mut data = vec![0; len];
    c.read_exact(&mut data).unwrap();
    (kind, data)
}

fn request(c: &mut UnixStream, flags: u16, command: u16, cookie: u64, offset: u64, length: u32) {
    c.write_all(&REQUEST_MAGIC.to_be_bytes()).unwrap();
    c.write_all(&flags.to_be_bytes()).unwrap();
    c.write_all(&command.to_be_bytes()).unwrap();
    c.write_all(&cookie.to_be_bytes()).unwrap();
    c.write_all(&offset.to_be_bytes()).unwrap();
    c.write_all(&length.to_be_bytes()).unwrap();
}

/// One structured chunk: (flags, type, cookie, payload).
fn chunk(c: &mut UnixStream) -> (u16, u16, u64, Vec<u8>) {
    assert_eq!(u32::from_be_bytes(get(c)), STRUCTURED_REPLY_MAGIC);
    let flags = u16::from_be_bytes(get(c));
    let kind = u16::from_be_bytes(get(c));
    let cookie = u64::from_be_bytes(get(c));
    let len = u32::from_be_bytes(get(c)) as usize;
    let mut payload = vec![0; len];
    c.read_exact(&mut payload).unwrap();
    (flags, kind, cookie, payload)
}

fn name_and(rest: &[u8]) -> Vec<u8> {
    let mut d = 4u32.to_be_bytes().to_vec();
    d.extend_from_slice(b"disk");
    d.extend_from_slice(rest);
    d
}

#[test]
fn go_structured_reads_holes_and_block_status() {
    let mut c = start();
    assert_eq!(u64::from_be_bytes(get(&mut c)), NBDMAGIC);
    assert_eq!(u64::from_be_bytes(get(&mut c)), IHAVEOPT);
    assert_eq!(
        u16::from_be_bytes(get(&mut c)),
        FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES
    );
    c.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes())
        .unwrap();

    option(&mut c, 99, &[]);
    assert_eq!(option_reply(&mut c, 99).0, REP_ERR_UNSUP);
    option(&mut c, OPT_LIST, &[]);
    assert_eq!(option_reply(&mut c, OPT_LIST), (REP_SERVER, name_and(&[])));
    assert_eq!(option_reply(&mut c, OPT_LIST).0, REP_ACK);
    option(&mut c, OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(option_reply(&mut c, OPT_STRUCTURED_REPLY).0, REP_ACK);
    let mut query = 1u32.to_be_bytes().to_vec();
    query.extend_from_slice(&15u32.to_be_bytes());
    query.extend_from_slice(b"base:allocation");
    option(&mut c, OPT_SET_META_CONTEXT, &name_and(&query));
    let (kind, context) = option_reply(&mut c, OPT_SET_META_CONTEXT);
    assert_eq!(kind, REP_META_CONTEXT);
    assert_eq!(&context[4..], b"base:allocation");
    assert_eq!(option_reply(&mut c, OPT_SET_META_CONTEXT).0, REP_ACK);
    // An unknown name is refused; "disk" is served with its size.
    let mut wrong = 3u32.to_be_bytes().to_vec();
    wrong.extend_from_slice(b"nop\0\0");
    option(&mut c, OPT_GO, &wrong);
    assert_eq!(option_reply(&mut c, OPT_GO).0, REP_ERR_UNKNOWN);
    let mut go = name_and(&1u16.to_be_bytes());
    go.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    option(&mut c, OPT_GO, &go);
    let (kind, info) = option_reply(&mut c, OPT_GO);
    assert_eq!(kind, REP_INFO);
    assert_eq!(u16::from_be_bytes([info[0], info[1]]), INFO_EXPORT);
    assert_eq!(u64::from_be_bytes(info[2..10].try_into().unwrap()), 12288);
    let flags = u16::from_be_bytes([info[10], info[11]]);
    assert_ne!(flags & TFLAG_READ_ONLY, 0);
    let (kind, block) = option_reply(&mut c, OPT_GO);
    assert_eq!(
        (kind, u16::from_be_bytes([block[0], block[1]])),
        (REP_INFO, INFO_BLOCK_SIZE)
    );
    assert_eq!(option_reply(&mut c, OPT_GO).0, REP_ACK);

    // Read across data, hole, data: three chunks, the last one done.
    request(&mut c, 0, CMD_READ, 7, 4000, 4400);
    let want = data();
    let mut got = vec![0xEEu8; 4400];
    let mut done = false;
    while !done {
        let (flags, kind, cookie, payload) = chunk(&mut c);
        assert_eq!(cookie, 7);
        done = flags & REPLY_FLAG_DONE != 0;
        let offset = u64::from_be_bytes(payload[..8].try_into().unwrap()) as usize - 4000;
        match kind {
            REPLY_TYPE_OFFSET_DATA => {
                got[offset..offset + payload.len() - 8].copy_from_slice(&payload[8..])
            }
            REPLY_TYPE_OFFSET_HOLE => {
                let len = u32::from_be_bytes(payload[8..12].try_into().unwrap()) as usize;
                got[offset..offset + len].fill(0);
            }
            other => panic!("chunk type {other}"),
        }
    }
    assert_eq!(got, want[4000..8400]);

    request(&mut c, 0, CMD_BLOCK_STATUS, 8, 0, 12288);
    let (flags, kind, _, payload) = chunk(&mut c);
    assert_eq!((flags, kind), (REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS));
    let words: Vec<u32> = payload
        .chunks(4)
        .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
        .collect();
    assert_eq!(
        words,
        [
            BASE_ALLOCATION_ID,
            4096,
            0,
            4096,
            STATE_HOLE | STATE_ZERO,
            4096,
            0
        ]
    );

    // Writes are refused after their payload is read; the connection lives on.
    request(&mut c, 0, CMD_WRITE, 9, 0, 3);
    c.write_all(b"abc").unwrap();
    let (_, kind, cookie, payload) = chunk(&mut c);
    assert_eq!((kind, cookie), (REPLY_TYPE_ERROR, 9));
    assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), EPERM);
    request(&mut c, 0, CMD_READ, 10, 12288, 1);
    let (_, kind, _, payload) = chunk(&mut c);
    assert_eq!(kind, REPLY_TYPE_ERROR);
    assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), EINVAL);
    request(&mut c, 0, CMD_DISC, 11, 0, 0);
}

#[test]
fn export_name_and_simple_replies() {
    let mut c = start();
    let _: [u8; 18] = get(&mut c);
    c.write_all(&FLAG_C_FIXED_NEWSTYLE.to_be_bytes()).unwrap();
    option(&mut c, OPT_EXPORT_NAME, b"");
    assert_eq!(u64::from_be_bytes(get(&mut c)), 12288);
    let _flags: [u8; 2] = get(&mut c);
    let zeroes: [u8; 124] = get(&mut c);
    assert!(zeroes.iter().all(|b| *b == 0));
    request(&mut c, 0, CMD_READ, 1, 8000, 300);
    assert_eq!(u32::from_be_bytes(get(&mut c)), SIMPLE_REPLY_MAGIC);
    assert_eq!(u32::from_be_bytes(get(&mut c)), 0);
    assert_eq!(u64::from_be_bytes(get(&mut c)), 1);
    let body: [u8; 300] = get(&mut c);
    assert_eq!(body.as_slice(), &data()[8000..8300]);
}

#[test]
fn listen_addresses() {
    assert_eq!(Listen::parse("unix:/tmp/s"), Listen::Unix("/tmp/s".into()));
    assert_eq!(
        Listen::parse("/run/x.sock"),
        Listen::Unix("/run/x.sock".into())
    );
    assert_eq!(Listen::parse(":10809"), Listen::Tcp("0.0.0.0:10809".into()));
    assert_eq!(
        Listen::parse("127.0.0.1:0"),
        Listen::Tcp("127.0.0.1:0".into())
    );
}
