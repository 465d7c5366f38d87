//! Upload/download throughput of the SFTP backend.
//!
//! ```text
//! cargo run --release -p restix-sftp --example sftp_bench -- sftp://user@host:port//tmp/bench 256 [connections]
//! ```
//!
//! Writes one file of the given size in MiB (a pack), reads it back, then
//! writes four quarter-size files in parallel; prints MB/s (10^6 bytes/s) for
//! each. Uses `$HOME/.ssh` like restix does. The folder is created.

use std::sync::Arc;
use std::time::Instant;

use restix_backend::{Backend, FileType};
use restix_sftp::{open, SftpLocation, SftpOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .ok_or("usage: sftp_bench <sftp-url> [MiB] [connections]")?;
    let mib: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let connections = args.get(3).cloned().unwrap_or_else(|| "5".to_string());
    let location = SftpLocation::parse(url)?;
    let opts = SftpOptions::from_pairs([("sftp.connections", connections.as_str())])?;
    let backend = Arc::new(open(&location, &opts)?);
    let _ = backend.create();

    let size = mib << 20;
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or(&bytes));
    }
    let name = format!("{:064x}", size);
    let _ = backend.remove(FileType::Pack, &name);

    let t = Instant::now();
    backend.write(FileType::Pack, &name, &data)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "write {mib} MiB: {secs:.2} s, {:.0} MB/s",
        size as f64 / secs / 1e6
    );

    let t = Instant::now();
    let back = backend.read(FileType::Pack, &name)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "read  {mib} MiB: {secs:.2} s, {:.0} MB/s",
        size as f64 / secs / 1e6
    );
    if back != data {
        return Err("read back differs".into());
    }
    backend.remove(FileType::Pack, &name)?;

    let quarter = size / 4;
    let t = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let backend = backend.clone();
            let piece = data
                .get(i * quarter..(i + 1) * quarter)
                .unwrap_or(&[])
                .to_vec();
            std::thread::spawn(move || {
                let name = format!("{:063x}{i}", size);
                let r = backend.write(FileType::Pack, &name, &piece);
                let _ = backend.remove(FileType::Pack, &name);
                r
            })
        })
        .collect();
    for th in threads {
        th.join().map_err(|_| "writer panicked")??;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "write 4 x {} MiB in parallel: {secs:.2} s, {:.0} MB/s",
        mib / 4,
        size as f64 / secs / 1e6
    );
    Ok(())
}
