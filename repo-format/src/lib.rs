//! The restic repository format as pure data: IDs, encryption, key files,
//! config, pack headers, index/snapshot/tree/lock JSON and compression.
//!
//! No I/O happens here; `restix-engine` moves the bytes. Everything follows
//! `shared/spec/restic-format.md` (cited as "spec §N" in comments), and every
//! parser takes `&[u8]` from an untrusted source and returns a `Result`
//! without panicking or allocating more than a small multiple of its input
//! (decompression is bounded explicitly).
//!
//! ```
//! use restix_repo_format::{Id, Key, Tree, Node, NodeType, GoTime};
//!
//! // Encrypt and decrypt like restic (AES-256-CTR + Poly1305-AES).
//! let key = Key::random();
//! let sealed = key.encrypt(b"hello");
//! assert_eq!(key.decrypt(&sealed).unwrap(), b"hello");
//!
//! // Encode a tree exactly as restic does; its ID is the SHA-256 of the bytes.
//! let mut node = Node::new(b"file.txt".to_vec(), NodeType::File);
//! node.mode = 0o644;
//! node.mtime = GoTime::from_unix_utc(1_700_000_000, 0);
//! node.content = Some(vec![Id::hash(b"hello")]);
//! let tree = Tree { nodes: vec![node] };
//! let bytes = tree.encode().unwrap();
//! assert!(bytes.starts_with(br#"{"nodes":[{"name":"file.txt","type":"file","mode":420,"#));
//! assert_eq!(Tree::decode(&bytes).unwrap(), tree);
//! let tree_id = Id::hash(&bytes);
//! # let _ = tree_id;
//! ```
//!
//! # Memory cost of the types
//!
//! * [`Id`]: 32 bytes, `Copy`. [`IndexBlob`]: 80 bytes; [`PackBlob`]: 56 bytes.
//!   An engine-side in-memory index should store compact entries (ID +
//!   pack number + offset + lengths ≈ 48 bytes a blob, ≈ 48 MiB per million
//!   blobs, i.e. per ~1 TiB of unique data at restic's ~1 MiB mean chunk).
//! * [`Node`]: about 330 bytes on the stack plus its heap data (name, IDs:
//!   32 bytes per content blob); a decoded [`Tree`] costs roughly 2-3× its
//!   JSON size.
//! * [`Key`]: 64 bytes. Crypto works in place ([`Key::encrypt_into`],
//!   [`Key::decrypt_slice_in_place`]) so packs need no extra copies.
//! * Decompression allocates exactly the expected length for blobs and at
//!   most [`compression::MAX_DECOMPRESSED_SIZE`] for unpacked files.
//!
//! # Throughput
//!
//! `cargo run --release -p restix-repo-format --example throughput` measures
//! one core: encryption (fused AES-256-CTR + Poly1305 pass over 16 KiB
//! pieces), in-place decryption, SHA-256 and zstd. AES-NI, AVX2 Poly1305 and
//! SHA-NI are detected at run time by the `aes`, `poly1305` and `sha2`
//! crates; scrypt's ROMix runs on AVX-512VL where the CPU has it
//! (`scrypt_kdf`).

// Two `unsafe` calls in the crate, both in `scrypt_kdf`: the AVX-512 ROMix
// after detecting the CPU features it needs, and madvise(MADV_HUGEPAGE) on
// its table (a hint that changes no memory).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod compression;
pub mod config;
pub mod crypto;
pub mod gojson;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod random;
mod scrypt_kdf;
mod serde_util;
pub mod snapshot;
pub mod time;
pub mod tree;
pub mod unpacked;

pub use compression::{CompressionError, CompressionMode, Compressor};
pub use config::{Config, ConfigError};
pub use crypto::{CryptoError, Key, CRYPTO_OVERHEAD};
pub use id::{BlobType, Id, IdError};
pub use index::{IndexBlob, IndexFile, IndexPack};
pub use keyfile::{KeyFile, KeyFileError, ScryptParams};
pub use lock::Lock;
pub use pack::{PackBlob, PackError, PackHeader};
pub use snapshot::{Snapshot, SnapshotSummary};
pub use time::{GoTime, TimeError};
pub use tree::{ExtendedAttribute, Node, NodeType, Tree, TreeError};
pub use unpacked::{decode_unpacked, encode_unpacked, UnpackedError};

/// Fills `buf` with bytes from the OS CSPRNG (for salts, IDs, IVs).
pub fn random_bytes(buf: &mut [u8]) {
    random::fill(buf)
}

/// Any error of this crate, for callers that do not care which file failed.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// See [`IdError`].
    #[error(transparent)]
    Id(#[from] IdError),
    /// See [`CryptoError`].
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// See [`KeyFileError`].
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// See [`ConfigError`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// See [`UnpackedError`].
    #[error(transparent)]
    Unpacked(#[from] UnpackedError),
    /// See [`CompressionError`].
    #[error(transparent)]
    Compression(#[from] CompressionError),
    /// See [`PackError`].
    #[error(transparent)]
    Pack(#[from] PackError),
    /// See [`TreeError`].
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// See [`TimeError`].
    #[error(transparent)]
    Time(#[from] TimeError),
    /// Invalid JSON in an index, snapshot or lock file.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
}
