//! Tree nodes from file metadata, filled exactly as `restic backup` does
//! (spec: restic-format §11.5).

use std::ffi::{CString, OsStr};
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use restix_repo_format::tree::go_mode_from_unix;
use restix_repo_format::{ExtendedAttribute, GoTime, Node, NodeType};

use crate::repository::os_identity;

/// Build the node for `path` (already `lstat`ed into `meta`), named `name`.
/// `content`/`subtree` are left for the caller. Reading the symlink target or
/// the xattrs may fail; the node is still returned (restic notes such
/// failures as warnings only).
pub fn node_from_metadata(name: &[u8], path: &Path, meta: &Metadata, with_atime: bool) -> Node {
    let mode = go_mode_from_unix(meta.mode());
    let node_type = NodeType::from_go_mode(mode);
    let mut node = Node::new(name.to_vec(), node_type);
    node.mode = mode;
    node.mtime = clamp_time(GoTime::from_unix_nanos_local(
        meta.mtime(),
        meta.mtime_nsec().clamp(0, 999_999_999) as u32,
    ));
    node.atime = if with_atime {
        clamp_time(GoTime::from_unix_nanos_local(
            meta.atime(),
            meta.atime_nsec().clamp(0, 999_999_999) as u32,
        ))
    } else {
        node.mtime
    };
    node.ctime = clamp_time(GoTime::from_unix_nanos_local(
        meta.ctime(),
        meta.ctime_nsec().clamp(0, 999_999_999) as u32,
    ));
    node.uid = meta.uid();
    node.gid = meta.gid();
    node.user = os_identity::user_name(meta.uid())
        .unwrap_or_default()
        .into_bytes();
    node.group = os_identity::group_name(meta.gid())
        .unwrap_or_default()
        .into_bytes();
    node.inode = meta.ino();
    node.device_id = meta.dev();
    match node_type {
        NodeType::File => {
            node.size = meta.size();
            node.links = meta.nlink();
            node.content = Some(Vec::new());
        }
        NodeType::Symlink => {
            node.links = meta.nlink();
            if let Ok(target) = std::fs::read_link(path) {
                node.linktarget = target.as_os_str().as_bytes().to_vec();
            }
        }
        NodeType::Dev | NodeType::CharDev => {
            node.links = meta.nlink();
            node.device = meta.rdev();
        }
        _ => {}
    }
    node.extended_attributes = read_xattrs(path);
    node
}

/// Times outside years 0..=9999 get their year clamped (spec §11.5).
fn clamp_time(t: GoTime) -> GoTime {
    t.clamp_year()
}

/// All extended attributes of `path` (not following symlinks) in
/// `listxattr` order; errors yield an empty list like restic's ignored
/// list errors.
pub fn read_xattrs(path: &Path) -> Vec<ExtendedAttribute> {
    let Ok(cpath) = CString::new(path.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: cpath is NUL-terminated; names is writable for its length.
        let n = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && names.len() < (1 << 24) {
            names.resize(names.len() * 4, 0);
            continue;
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names
        .get(..len)
        .unwrap_or(&[])
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        out.push(ExtendedAttribute {
            name: name.to_vec(),
            value: get_xattr(&cpath, &cname),
        });
    }
    out
}

fn get_xattr(path: &CString, name: &CString) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: both strings are NUL-terminated; buf is writable for its length.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Some(buf);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && buf.len() < (1 << 26) {
            buf.resize(buf.len() * 8, 0);
            continue;
        }
        return None;
    }
}

/// The base name of a path as raw bytes.
pub fn base_name(path: &Path) -> Vec<u8> {
    path.file_name()
        .map(OsStr::as_bytes)
        .unwrap_or_default()
        .to_vec()
}
