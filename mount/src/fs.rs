//! The FUSE filesystem: the generated folders of [`crate::layout`] above,
//! each snapshot's trees below, read-only.
//!
//! Behaviour follows restic 0.18.1's `internal/fuse` (facts carried over,
//! code written anew): a snapshot folder is a directory of mode 0555 owned
//! by root with the snapshot's time; entries named `.` or `/` in a tree are
//! replaced by their contents; files show their node's mode, owner, times
//! and link count (`--owner-root` shows root instead); hard links (nodes
//! with more than one link) share one inode number made from the node's
//! device and inode; directories count `2 +` their subfolders as links;
//! extended attributes are listed and read; the snapshot list is re-read at
//! most once a minute, and the index reloaded when it changed.
//!
//! Inode numbers are a hash of the parent's number and the name, like
//! restic's, so `find`/`ls -i` are stable for the life of the mount. The
//! kernel's node ID is the inode number (fuser's model); a collision with a
//! different entry moves to the next free number.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyXattr, Request,
};
use restix_engine::selection::SnapshotFilter;
use restix_engine::vfs::{BlobSource, FileReader};
use restix_repo_format::tree::unix_permissions_from_go;
use restix_repo_format::{GoTime, Node, NodeType};
use sha2::{Digest, Sha256};

use crate::layout::{SnapshotLayout, DEFAULT_PATH_TEMPLATES};
use crate::MountError;

/// How often the snapshot list is read again (restic: 60 s).
const SNAPSHOT_RELOAD: Duration = Duration::from_secs(60);
/// How long the kernel may keep the generated folders' entries.
const META_TTL: Duration = Duration::from_secs(1);
/// How long the kernel may keep snapshot contents' entries: they never change.
const CONTENT_TTL: Duration = Duration::from_secs(3600);
/// Block size reported in `stat` (restic: 512).
const BLOCK_SIZE: u32 = 512;
const ROOT: u64 = 1;

/// What `restix mount` passes in (restic's `fuse.Config`).
#[derive(Debug, Clone, Default)]
pub struct MountConfig {
    /// `--owner-root`: show root as the owner of everything.
    pub owner_root: bool,
    /// `--host/--tag/--path`: which snapshots appear.
    pub filter: SnapshotFilter,
    /// `--time-template` (Go layout).
    pub time_template: String,
    /// `--path-template`s; empty = restic's defaults.
    pub path_templates: Vec<String>,
}

/// A directory's entries after `.`/`/` replacement, by cleaned name.
type Listing = BTreeMap<Vec<u8>, Arc<Node>>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum InodeKey {
    Named {
        parent: u64,
        name: Vec<u8>,
        /// Distinguishes generated entries that now show another snapshot.
        salt: Vec<u8>,
    },
    HardLink {
        device: u64,
        inode: u64,
    },
}

enum Kind {
    /// A generated folder (`""` = the root).
    Meta { path: String },
    /// A generated `latest` link.
    SnapshotLink { target: String, time: GoTime },
    /// A directory of a snapshot (a snapshot's root is one with a made-up node).
    Dir {
        node: Arc<Node>,
        listing: Mutex<Option<Arc<Listing>>>,
    },
    /// A regular file; its reader is made on first open.
    File {
        node: Arc<Node>,
        reader: Mutex<Option<Arc<FileReader>>>,
    },
    /// Symlinks, devices, FIFOs, sockets.
    Leaf { node: Arc<Node> },
}

struct Inode {
    key: InodeKey,
    parent: u64,
    kind: Kind,
    lookups: AtomicU64,
}

struct LayoutState {
    layout: Arc<SnapshotLayout>,
    hash: [u8; 32],
    checked: Instant,
}

/// The mounted repository (implements [`fuser::Filesystem`]).
pub struct SnapshotFs {
    source: Arc<BlobSource>,
    config: MountConfig,
    templates: Vec<String>,
    owner: (u32, u32),
    mounted_at: SystemTime,
    layout: Mutex<LayoutState>,
    inodes: RwLock<HashMap<u64, Arc<Inode>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SnapshotFs {
    /// Read the snapshot list and build the generated folders. The index
    /// must be loaded.
    pub fn new(source: Arc<BlobSource>, config: MountConfig) -> Result<SnapshotFs, MountError> {
        let templates = if config.path_templates.is_empty() {
            DEFAULT_PATH_TEMPLATES
                .iter()
                .map(|t| t.to_string())
                .collect()
        } else {
            config.path_templates.clone()
        };
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let owner = if config.owner_root {
            (0, 0)
        } else {
            unsafe { (libc::getuid(), libc::getgid()) }
        };
        let (layout, hash) = Self::read_layout(&source, &config, &templates)?;
        let fs = SnapshotFs {
            source,
            config,
            templates,
            owner,
            mounted_at: SystemTime::now(),
            layout: Mutex::new(LayoutState {
                layout: Arc::new(layout),
                hash,
                checked: Instant::now(),
            }),
            inodes: RwLock::new(HashMap::new()),
        };
        let root = Inode {
            key: InodeKey::Named {
                parent: ROOT,
                name: Vec::new(),
                salt: Vec::new(),
            },
            parent: ROOT,
            kind: Kind::Meta {
                path: String::new(),
            },
            lookups: AtomicU64::new(1),
        };
        fs.write_inodes().insert(ROOT, Arc::new(root));
        Ok(fs)
    }

    /// The blob cache and loaders (for statistics).
    pub fn source(&self) -> &Arc<BlobSource> {
        &self.source
    }

    fn read_layout(
        source: &BlobSource,
        config: &MountConfig,
        templates: &[String],
    ) -> Result<(SnapshotLayout, [u8; 32]), MountError> {
        let repo = source.repository();
        let mut snapshots: Vec<_> = repo
            .list_snapshots()?
            .into_iter()
            .filter(|(_, s)| config.filter.matches(s))
            .collect();
        crate::layout::sort_oldest_first(&mut snapshots);
        let mut hasher = Sha256::new();
        for (id, _) in &snapshots {
            hasher.update(id.0);
        }
        let hash = hasher.finalize().into();
        let layout = SnapshotLayout::build(snapshots, templates, &config.time_template);
        Ok((layout, hash))
    }

    /// The generated folders, re-read when a minute has passed.
    fn current_layout(&self) -> Arc<SnapshotLayout> {
        let mut state = lock(&self.layout);
        if state.checked.elapsed() >= SNAPSHOT_RELOAD {
            state.checked = Instant::now();
            match Self::read_layout(&self.source, &self.config, &self.templates) {
                Ok((layout, hash)) if hash != state.hash => {
                    // New snapshots may use blobs the loaded index lacks.
                    if let Err(e) = self.source.repository().load_index() {
                        eprintln!("restix mount: reloading the index: {e}");
                    }
                    state.layout = Arc::new(layout);
                    state.hash = hash;
                }
                Ok(_) => {}
                Err(e) => eprintln!("restix mount: reading the snapshot list: {e}"),
            }
        }
        Arc::clone(&state.layout)
    }

    fn read_inodes(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Arc<Inode>>> {
        self.inodes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_inodes(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Arc<Inode>>> {
        self.inodes.write().unwrap_or_else(|e| e.into_inner())
    }

    fn inode(&self, ino: INodeNo) -> Result<Arc<Inode>, Errno> {
        self.read_inodes().get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    /// Register (or find) the inode for `key`, counting one lookup.
    fn intern(
        &self,
        wanted: u64,
        key: InodeKey,
        parent: u64,
        kind: impl FnOnce() -> Kind,
    ) -> (u64, Arc<Inode>) {
        let mut inodes = self.write_inodes();
        let mut ino = wanted;
        loop {
            match inodes.get(&ino) {
                Some(existing) if existing.key == key => {
                    existing.lookups.fetch_add(1, Ordering::Relaxed);
                    return (ino, Arc::clone(existing));
                }
                Some(_) => ino = remap(ino.wrapping_add(1)),
                None => break,
            }
        }
        let inode = Arc::new(Inode {
            key,
            parent,
            kind: kind(),
            lookups: AtomicU64::new(1),
        });
        inodes.insert(ino, Arc::clone(&inode));
        (ino, inode)
    }

    /// Entries of a snapshot directory, loading its tree once.
    fn listing(
        &self,
        node: &Node,
        cached: &Mutex<Option<Arc<Listing>>>,
    ) -> Result<Arc<Listing>, Errno> {
        let mut slot = lock(cached);
        if let Some(listing) = slot.as_ref() {
            return Ok(Arc::clone(listing));
        }
        let repo = self.source.repository();
        let Some(subtree) = node.subtree else {
            return Ok(Arc::new(Listing::new()));
        };
        let tree = repo
            .load_tree(&subtree)
            .map_err(|e| io_error("loading a tree", e))?;
        let mut listing = Listing::new();
        for child in tree.nodes {
            let special =
                child.node_type == NodeType::Dir && matches!(child.name.as_slice(), b"." | b"/");
            match (special, child.subtree) {
                (true, Some(inner)) => {
                    let inner = repo
                        .load_tree(&inner)
                        .map_err(|e| io_error("loading a tree", e))?;
                    for grandchild in inner.nodes {
                        listing.insert(base_name(&grandchild.name), Arc::new(grandchild));
                    }
                }
                _ => {
                    listing.insert(base_name(&child.name), Arc::new(child));
                }
            }
        }
        let listing = Arc::new(listing);
        *slot = Some(Arc::clone(&listing));
        Ok(listing)
    }

    fn file_reader(
        &self,
        node: &Node,
        cached: &Mutex<Option<Arc<FileReader>>>,
    ) -> Result<Arc<FileReader>, Errno> {
        let mut slot = lock(cached);
        if let Some(reader) = slot.as_ref() {
            return Ok(Arc::clone(reader));
        }
        let reader = Arc::new(
            self.source
                .open_node(node)
                .map_err(|e| io_error(&format!("opening {}", node.name_lossy()), e))?,
        );
        *slot = Some(Arc::clone(&reader));
        Ok(reader)
    }

    fn times(&self, node: &Node) -> (SystemTime, SystemTime, SystemTime) {
        (
            node.atime.to_system_time(),
            node.mtime.to_system_time(),
            node.ctime.to_system_time(),
        )
    }

    fn attr(&self, ino: u64, inode: &Inode) -> FileAttr {
        let (uid, gid) = self.owner;
        let mut attr = FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid,
            gid,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        };
        let node = match &inode.kind {
            Kind::Meta { .. } => return attr,
            Kind::SnapshotLink { target, time } => {
                let t = time.to_system_time();
                attr.kind = FileType::Symlink;
                attr.perm = 0o777;
                attr.size = target.len() as u64;
                attr.blocks = attr.size.div_ceil(u64::from(BLOCK_SIZE));
                attr.nlink = 1;
                (attr.atime, attr.mtime, attr.ctime) = (t, t, t);
                return attr;
            }
            Kind::Dir { node, listing } => {
                let subdirs = lock(listing).as_ref().map_or(0, |l| {
                    l.values().filter(|n| n.node_type == NodeType::Dir).count()
                });
                attr.nlink = 2 + u32::try_from(subdirs).unwrap_or(u32::MAX - 2);
                node
            }
            Kind::File { node, .. } => {
                attr.kind = FileType::RegularFile;
                attr.size = node.size;
                attr.nlink = link_count(node);
                node
            }
            Kind::Leaf { node } => {
                attr.kind = leaf_type(node.node_type);
                attr.nlink = link_count(node);
                if node.node_type == NodeType::Symlink {
                    attr.size = node.linktarget.len() as u64;
                }
                attr.rdev = u32::try_from(node.device).unwrap_or(0);
                node
            }
        };
        attr.blocks = attr.size.div_ceil(u64::from(BLOCK_SIZE));
        attr.perm = unix_permissions_from_go(node.mode) as u16;
        (attr.uid, attr.gid) = if self.config.owner_root {
            (0, 0)
        } else {
            (node.uid, node.gid)
        };
        (attr.atime, attr.mtime, attr.ctime) = self.times(node);
        attr.crtime = attr.mtime;
        attr
    }

    fn ttl(inode: &Inode) -> Duration {
        match inode.kind {
            Kind::Meta { .. } | Kind::SnapshotLink { .. } => META_TTL,
            _ => CONTENT_TTL,
        }
    }

    fn lookup_child(
        &self,
        parent: u64,
        dir: &Inode,
        name: &[u8],
    ) -> Result<(u64, Arc<Inode>), Errno> {
        match &dir.kind {
            Kind::Meta { path } => {
                let layout = self.current_layout();
                let entry = layout.get(path).ok_or(Errno::ENOENT)?;
                let name_text = std::str::from_utf8(name).map_err(|_| Errno::ENOENT)?;
                if !entry.names.contains(name_text) {
                    return Err(Errno::ENOENT);
                }
                let child_path = format!("{path}/{name_text}");
                let child = layout.get(&child_path).ok_or(Errno::ENOENT)?;
                let wanted = child_ino(parent, name);
                let shown = child.snapshot.and_then(|i| layout.snapshots.get(i));
                match (shown, &child.link_target) {
                    (Some((id, snapshot)), Some(target)) => {
                        let mut salt = id.0.to_vec();
                        salt.extend_from_slice(target.as_bytes());
                        let key = InodeKey::Named {
                            parent,
                            name: name.to_vec(),
                            salt,
                        };
                        Ok(self.intern(wanted, key, parent, || Kind::SnapshotLink {
                            target: target.clone(),
                            time: snapshot.time,
                        }))
                    }
                    (Some((id, snapshot)), None) => {
                        let key = InodeKey::Named {
                            parent,
                            name: name.to_vec(),
                            salt: id.0.to_vec(),
                        };
                        Ok(self.intern(wanted, key, parent, || {
                            let mut node = Node::new(Vec::new(), NodeType::Dir);
                            node.mode = restix_repo_format::tree::MODE_DIR | 0o555;
                            (node.atime, node.mtime, node.ctime) =
                                (snapshot.time, snapshot.time, snapshot.time);
                            node.subtree = snapshot.tree;
                            Kind::Dir {
                                node: Arc::new(node),
                                listing: Mutex::new(None),
                            }
                        }))
                    }
                    (None, _) => {
                        let key = InodeKey::Named {
                            parent,
                            name: name.to_vec(),
                            salt: Vec::new(),
                        };
                        Ok(self.intern(wanted, key, parent, || Kind::Meta { path: child_path }))
                    }
                }
            }
            Kind::Dir { node, listing } => {
                let listing = self.listing(node, listing)?;
                let child = listing.get(name).ok_or(Errno::ENOENT)?;
                let (wanted, key) = node_key(parent, name, child);
                let child = Arc::clone(child);
                let kind = move || match child.node_type {
                    NodeType::Dir => Kind::Dir {
                        node: child,
                        listing: Mutex::new(None),
                    },
                    NodeType::File => Kind::File {
                        node: child,
                        reader: Mutex::new(None),
                    },
                    _ => Kind::Leaf { node: child },
                };
                match listing.get(name).map(|n| n.node_type) {
                    Some(NodeType::Irregular | NodeType::Invalid) | None => Err(Errno::ENOENT),
                    _ => Ok(self.intern(wanted, key, parent, kind)),
                }
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// All entries of a directory, `.` and `..` first.
    fn entries(&self, ino: u64, dir: &Inode) -> Result<Vec<(u64, FileType, Vec<u8>)>, Errno> {
        let mut out = vec![
            (ino, FileType::Directory, b".".to_vec()),
            (dir.parent, FileType::Directory, b"..".to_vec()),
        ];
        match &dir.kind {
            Kind::Meta { path } => {
                let layout = self.current_layout();
                let entry = layout.get(path).ok_or(Errno::ENOENT)?;
                for name in &entry.names {
                    let child = layout.get(&format!("{path}/{name}"));
                    let kind = if child.is_some_and(|c| c.link_target.is_some()) {
                        FileType::Symlink
                    } else {
                        FileType::Directory
                    };
                    out.push((
                        child_ino(ino, name.as_bytes()),
                        kind,
                        name.as_bytes().to_vec(),
                    ));
                }
            }
            Kind::Dir { node, listing } => {
                let listing = self.listing(node, listing)?;
                for (name, child) in listing.iter() {
                    if matches!(child.node_type, NodeType::Irregular | NodeType::Invalid) {
                        continue;
                    }
                    let (child_ino, _) = node_key(ino, name, child);
                    out.push((child_ino, leaf_type(child.node_type), name.clone()));
                }
            }
            _ => return Err(Errno::ENOTDIR),
        }
        Ok(out)
    }

    fn xattrs(inode: &Inode) -> &[restix_repo_format::tree::ExtendedAttribute] {
        match &inode.kind {
            Kind::Dir { node, .. } | Kind::File { node, .. } | Kind::Leaf { node } => {
                &node.extended_attributes
            }
            _ => &[],
        }
    }
}

impl Filesystem for SnapshotFs {
    fn init(&mut self, _req: &Request, _config: &mut KernelConfig) -> std::io::Result<()> {
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self
            .inode(parent)
            .and_then(|dir| self.lookup_child(parent.0, &dir, name.as_bytes()));
        match result {
            Ok((ino, inode)) => {
                reply.entry(&Self::ttl(&inode), &self.attr(ino, &inode), Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if ino.0 == ROOT {
            return;
        }
        // Under the write lock: no lookup counts up meanwhile.
        let mut inodes = self.write_inodes();
        let gone = inodes.get(&ino.0).is_some_and(|inode| {
            let left = inode
                .lookups
                .load(Ordering::Relaxed)
                .saturating_sub(nlookup);
            inode.lookups.store(left, Ordering::Relaxed);
            left == 0
        });
        if gone {
            inodes.remove(&ino.0);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inode(ino) {
            Ok(inode) => reply.attr(&Self::ttl(&inode), &self.attr(ino.0, &inode)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inode(ino).map(|i| match &i.kind {
            Kind::SnapshotLink { target, .. } => Ok(target.as_bytes().to_vec()),
            Kind::Leaf { node } if node.node_type == NodeType::Symlink => {
                Ok(node.linktarget.clone())
            }
            _ => Err(Errno::EINVAL),
        }) {
            Ok(Ok(target)) => reply.data(&target),
            Ok(Err(e)) | Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let result = self.inode(ino).and_then(|inode| match &inode.kind {
            Kind::File { node, reader } => self.file_reader(node, reader).map(|_| ()),
            Kind::Dir { .. } | Kind::Meta { .. } => Err(Errno::EISDIR),
            _ => Ok(()),
        });
        match result {
            // Snapshot contents never change: the kernel may keep pages
            // across opens.
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.inode(ino).and_then(|inode| match &inode.kind {
            Kind::File { node, reader } => {
                let reader = self.file_reader(node, reader)?;
                let mut buf = vec![0u8; size as usize];
                let n = reader
                    .read_at(offset, &mut buf)
                    .map_err(|e| io_error(&format!("reading {}", node.name_lossy()), e))?;
                buf.truncate(n);
                Ok(buf)
            }
            _ => Err(Errno::EISDIR),
        });
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.inode(ino).and_then(|dir| self.entries(ino.0, &dir)) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (index, (child, kind, name)) in entries.into_iter().enumerate().skip(skip) {
            if reply.add(
                INodeNo(child),
                index as u64 + 1,
                kind,
                OsStr::from_bytes(&name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let inode = match self.inode(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let found = Self::xattrs(&inode)
            .iter()
            .find(|a| a.name == name.as_bytes());
        match found {
            None => reply.error(Errno::NO_XATTR),
            Some(attr) => {
                let value = attr.value.as_deref().unwrap_or_default();
                reply_sized(reply, size, value);
            }
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let inode = match self.inode(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let mut names = Vec::new();
        for attr in Self::xattrs(&inode) {
            names.extend_from_slice(&attr.name);
            names.push(0);
        }
        reply_sized(reply, size, &names);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        if mask.contains(fuser::AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        reply.ok();
    }
}

/// Answer a size query (`size == 0`) or send `value` if it fits.
fn reply_sized(reply: ReplyXattr, size: u32, value: &[u8]) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

fn io_error(what: &str, error: impl std::fmt::Display) -> Errno {
    eprintln!("restix mount: {what}: {error}");
    Errno::EIO
}

/// Inode numbers 0 and 1 are taken (invalid, root).
fn remap(ino: u64) -> u64 {
    if ino < 2 {
        ino + 2
    } else {
        ino
    }
}

fn child_ino(parent: u64, name: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    name.hash(&mut h);
    remap(h.finish())
}

/// Inode number and identity of a node inside a snapshot: hard-linked
/// files share theirs, whatever folder they are in.
fn node_key(parent: u64, name: &[u8], node: &Node) -> (u64, InodeKey) {
    if node.links > 1 && node.node_type != NodeType::Dir {
        let mut h = DefaultHasher::new();
        node.device_id.hash(&mut h);
        node.inode.hash(&mut h);
        let key = InodeKey::HardLink {
            device: node.device_id,
            inode: node.inode,
        };
        return (remap(h.finish()), key);
    }
    let key = InodeKey::Named {
        parent,
        name: name.to_vec(),
        salt: Vec::new(),
    };
    (child_ino(parent, name), key)
}

fn link_count(node: &Node) -> u32 {
    u32::try_from(node.links.max(1)).unwrap_or(u32::MAX)
}

fn leaf_type(node_type: NodeType) -> FileType {
    match node_type {
        NodeType::Dir => FileType::Directory,
        NodeType::Symlink => FileType::Symlink,
        NodeType::Dev => FileType::BlockDevice,
        NodeType::CharDev => FileType::CharDevice,
        NodeType::Fifo => FileType::NamedPipe,
        NodeType::Socket => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

/// Go's `filepath.Base` of a node name (restic's `cleanupNodeName`).
fn base_name(name: &[u8]) -> Vec<u8> {
    if name.is_empty() {
        return b".".to_vec();
    }
    let trimmed = {
        let mut end = name.len();
        while end > 0 && name[end - 1] == b'/' {
            end -= 1;
        }
        &name[..end]
    };
    if trimmed.is_empty() {
        return b"/".to_vec();
    }
    match trimmed.iter().rposition(|b| *b == b'/') {
        Some(slash) => trimmed[slash + 1..].to_vec(),
        None => trimmed.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_like_go() {
        assert_eq!(base_name(b"a"), b"a");
        assert_eq!(base_name(b"a/b/"), b"b");
        assert_eq!(base_name(b"///"), b"/");
        assert_eq!(base_name(b""), b".");
    }

    #[test]
    fn hard_links_share_an_inode_number() {
        let mut a = Node::new(b"a".to_vec(), NodeType::File);
        a.links = 2;
        a.inode = 77;
        a.device_id = 5;
        let mut b = a.clone();
        b.name = b"b".to_vec();
        assert_eq!(node_key(10, b"a", &a), node_key(99, b"b", &b));
        b.links = 1;
        assert_ne!(node_key(10, b"a", &a).0, node_key(10, b"b", &b).0);
        assert!(child_ino(1, b"x") >= 2);
    }
}
