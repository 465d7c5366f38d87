//! Read-ahead for large files: a thread reads fixed-size blocks into a
//! bounded queue while the workers chunk, hash and store the previous
//! window, so disk reads overlap with CPU work. Memory is bounded by
//! `blocks × block_size`.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

/// A `Read` that yields the bytes a background thread read from the inner reader.
pub struct ReadAhead {
    receiver: Option<Receiver<io::Result<Vec<u8>>>>,
    current: Vec<u8>,
    pos: usize,
    reader_thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Start reading `inner` in blocks of `block_size`, at most `blocks` ahead.
    pub fn new<R: Read + Send + 'static>(
        mut inner: R,
        block_size: usize,
        blocks: usize,
    ) -> io::Result<Self> {
        let (sender, receiver) = sync_channel::<io::Result<Vec<u8>>>(blocks.max(1));
        let block_size = block_size.max(4096);
        let reader_thread = std::thread::Builder::new()
            .name("restix-read-ahead".into())
            .spawn(move || loop {
                let mut buf = vec![0u8; block_size];
                let mut filled = 0;
                let result = loop {
                    match inner.read(buf.get_mut(filled..).unwrap_or_default()) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == buf.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                match result {
                    Err(e) => {
                        let _ = sender.send(Err(e));
                        return;
                    }
                    Ok(()) => {
                        buf.truncate(filled);
                        let done = filled == 0;
                        // The consumer is gone: stop reading.
                        if sender.send(Ok(buf)).is_err() || done {
                            return;
                        }
                    }
                }
            })?;
        Ok(ReadAhead {
            receiver: Some(receiver),
            current: Vec::new(),
            pos: 0,
            reader_thread: Some(reader_thread),
        })
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.current.len() {
            let Some(receiver) = self.receiver.as_ref() else {
                return Ok(0);
            };
            match receiver.recv() {
                Ok(Ok(block)) if block.is_empty() => {
                    self.receiver = None;
                    return Ok(0);
                }
                Ok(Ok(block)) => {
                    self.current = block;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.receiver = None;
                    return Err(e);
                }
                Err(_) => {
                    self.receiver = None;
                    return Ok(0);
                }
            }
        }
        let available = self.current.get(self.pos..).unwrap_or_default();
        let n = available.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), available.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Dropping the receiver makes the reader's next send fail.
        self.receiver = None;
        if let Some(h) = self.reader_thread.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_all_bytes_in_order() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = ReadAhead::new(std::io::Cursor::new(data.clone()), 4096, 2).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        // Dropping early does not hang.
        let r = ReadAhead::new(std::io::Cursor::new(data), 4096, 1).unwrap();
        drop(r);
    }
}
