//! Trees and nodes: directory listings whose exact JSON bytes determine the
//! tree ID. spec: restic-format §11, §12.
//!
//! Encoding is a hand-written Go `encoding/json` emulation ([`crate::gojson`]);
//! decoding uses serde. Names, link targets, user/group and xattr names are
//! raw bytes, as Go strings are.

mod mode;
mod printable;
mod quote;

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::gojson;
use crate::id::Id;
use crate::serde_util::null_default;
use crate::time::{GoTime, TimeError};

pub use mode::*;
pub use quote::{is_print, quote_inner, unquote_inner};

/// Errors encoding or decoding trees.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Not valid tree JSON.
    #[error("invalid tree JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A node name is not a valid Go-quoted string.
    #[error("invalid quoted node name {0:?}")]
    InvalidName(String),
    /// Nodes are not strictly sorted by name (or a name repeats).
    #[error("tree nodes not ordered: node {index} ({name:?}) is not after its predecessor")]
    NotSorted {
        /// Index of the offending node.
        index: usize,
        /// Its name (lossy).
        name: String,
    },
    /// A node time cannot be encoded (year outside 0..=9999; clamp first).
    #[error("node {name:?}: {source}")]
    Time {
        /// The node's name (lossy).
        name: String,
        /// The time error.
        source: TimeError,
    },
    /// Base64 in `linktarget_raw` or an xattr value is invalid.
    #[error("invalid base64 in node {0:?}")]
    InvalidBase64(String),
}

/// The type of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum NodeType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Block device.
    Dev,
    /// Character device.
    CharDev,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Anything else restic could not classify.
    Irregular,
    /// Empty or unknown type string (encodes as `""`).
    #[default]
    Invalid,
}

impl NodeType {
    /// The JSON string.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::File => "file",
            NodeType::Dir => "dir",
            NodeType::Symlink => "symlink",
            NodeType::Dev => "dev",
            NodeType::CharDev => "chardev",
            NodeType::Fifo => "fifo",
            NodeType::Socket => "socket",
            NodeType::Irregular => "irregular",
            NodeType::Invalid => "",
        }
    }

    /// Parses the JSON string; unknown strings become `Invalid`.
    pub fn from_name(s: &str) -> NodeType {
        match s {
            "file" => NodeType::File,
            "dir" => NodeType::Dir,
            "symlink" => NodeType::Symlink,
            "dev" => NodeType::Dev,
            "chardev" => NodeType::CharDev,
            "fifo" => NodeType::Fifo,
            "socket" => NodeType::Socket,
            "irregular" => NodeType::Irregular,
            _ => NodeType::Invalid,
        }
    }

    /// The node type for a Go `FileMode` (as [`go_mode_from_unix`] returns).
    pub fn from_go_mode(mode: u32) -> NodeType {
        if mode & MODE_DIR != 0 {
            NodeType::Dir
        } else if mode & MODE_SYMLINK != 0 {
            NodeType::Symlink
        } else if mode & MODE_DEVICE != 0 {
            if mode & MODE_CHAR_DEVICE != 0 {
                NodeType::CharDev
            } else {
                NodeType::Dev
            }
        } else if mode & MODE_NAMED_PIPE != 0 {
            NodeType::Fifo
        } else if mode & MODE_SOCKET != 0 {
            NodeType::Socket
        } else if mode & MODE_IRREGULAR != 0 {
            NodeType::Irregular
        } else {
            NodeType::File
        }
    }
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtendedAttribute {
    /// Attribute name (raw bytes).
    pub name: Vec<u8>,
    /// Value; `None` encodes as `null`, `Some(empty)` as `""`.
    pub value: Option<Vec<u8>>,
}

/// One directory entry, fields in restic's JSON order (spec §11.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// File name (raw bytes, unquoted).
    pub name: Vec<u8>,
    /// Node type.
    pub node_type: NodeType,
    /// Go `os.FileMode` bits ([`go_mode_from_unix`]).
    pub mode: u32,
    /// Modification time.
    pub mtime: GoTime,
    /// Access time (restic stores `mtime` unless `--with-atime`).
    pub atime: GoTime,
    /// Status change time.
    pub ctime: GoTime,
    /// Numeric user ID.
    pub uid: u32,
    /// Numeric group ID.
    pub gid: u32,
    /// User name (empty if unknown).
    pub user: Vec<u8>,
    /// Group name (empty if unknown).
    pub group: Vec<u8>,
    /// Inode number.
    pub inode: u64,
    /// `st_dev` of the containing file system.
    pub device_id: u64,
    /// File size (files only).
    pub size: u64,
    /// Hard link count.
    pub links: u64,
    /// Symlink target (raw bytes). `linktarget_raw` is derived from it when
    /// it is not valid UTF-8.
    pub linktarget: Vec<u8>,
    /// Extended attributes in `listxattr` order.
    pub extended_attributes: Vec<ExtendedAttribute>,
    /// Windows attributes etc.: key → raw JSON value text (re-compacted and
    /// HTML-escaped on encoding, as Go does with `json.RawMessage`).
    pub generic_attributes: BTreeMap<String, Vec<u8>>,
    /// `st_rdev` for devices.
    pub device: u64,
    /// Data blob IDs (`None` → `null` for non-files, `Some([])` for empty files).
    pub content: Option<Vec<Id>>,
    /// Tree ID of a directory's contents.
    pub subtree: Option<Id>,
    /// Error note for incomplete metadata.
    pub error: String,
}

impl Node {
    /// A node with the given name and type and all other fields zero
    /// (times are Go's zero time, `content` is `None`).
    pub fn new(name: Vec<u8>, node_type: NodeType) -> Node {
        Node {
            name,
            node_type,
            ..Node::default()
        }
    }

    /// The name for display (invalid UTF-8 replaced).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// Appends this node's Go JSON encoding to `out`. spec: §11.2.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), TreeError> {
        let mut quoted = Vec::with_capacity(self.name.len() + 8);
        quote_inner(&mut quoted, &self.name);
        out.extend_from_slice(b"{\"name\":");
        gojson::write_string(out, &quoted);
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(self.node_type.as_str().as_bytes());
        out.push(b'"');
        if self.mode != 0 {
            out.extend_from_slice(b",\"mode\":");
            gojson::write_u64(out, u64::from(self.mode));
        }
        for (key, t) in [
            (&b",\"mtime\":\""[..], self.mtime),
            (b",\"atime\":\"", self.atime),
            (b",\"ctime\":\"", self.ctime),
        ] {
            out.extend_from_slice(key);
            let mut s = String::with_capacity(36);
            t.write_rfc3339(&mut s).map_err(|source| TreeError::Time {
                name: self.name_lossy(),
                source,
            })?;
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"uid\":");
        gojson::write_u64(out, u64::from(self.uid));
        out.extend_from_slice(b",\"gid\":");
        gojson::write_u64(out, u64::from(self.gid));
        if !self.user.is_empty() {
            out.extend_from_slice(b",\"user\":");
            gojson::write_string(out, &self.user);
        }
        if !self.group.is_empty() {
            out.extend_from_slice(b",\"group\":");
            gojson::write_string(out, &self.group);
        }
        for (key, v) in [
            (&b",\"inode\":"[..], self.inode),
            (b",\"device_id\":", self.device_id),
            (b",\"size\":", self.size),
            (b",\"links\":", self.links),
        ] {
            if v != 0 {
                out.extend_from_slice(key);
                gojson::write_u64(out, v);
            }
        }
        if !self.linktarget.is_empty() {
            out.extend_from_slice(b",\"linktarget\":");
            gojson::write_string(out, &self.linktarget);
            if std::str::from_utf8(&self.linktarget).is_err() {
                out.extend_from_slice(b",\"linktarget_raw\":");
                gojson::write_base64(out, Some(&self.linktarget));
            }
        }
        if !self.extended_attributes.is_empty() {
            out.extend_from_slice(b",\"extended_attributes\":[");
            for (i, xa) in self.extended_attributes.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"name\":");
                gojson::write_string(out, &xa.name);
                out.extend_from_slice(b",\"value\":");
                gojson::write_base64(out, xa.value.as_deref());
                out.push(b'}');
            }
            out.push(b']');
        }
        if !self.generic_attributes.is_empty() {
            out.extend_from_slice(b",\"generic_attributes\":{");
            for (i, (k, v)) in self.generic_attributes.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                gojson::write_string(out, k.as_bytes());
                out.push(b':');
                gojson::write_raw_compact(out, v);
            }
            out.push(b'}');
        }
        if self.device != 0 {
            out.extend_from_slice(b",\"device\":");
            gojson::write_u64(out, self.device);
        }
        out.extend_from_slice(b",\"content\":");
        match &self.content {
            None => out.extend_from_slice(b"null"),
            Some(ids) => {
                out.reserve(ids.len() * 67 + 2);
                out.push(b'[');
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    id.write_hex(out);
                    out.push(b'"');
                }
                out.push(b']');
            }
        }
        if let Some(id) = &self.subtree {
            out.extend_from_slice(b",\"subtree\":\"");
            out.extend_from_slice(id.to_hex().as_bytes());
            out.push(b'"');
        }
        if !self.error.is_empty() {
            out.extend_from_slice(b",\"error\":");
            gojson::write_string(out, self.error.as_bytes());
        }
        out.push(b'}');
        Ok(())
    }
}

/// A directory listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// Nodes, strictly sorted by raw name bytes.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Sorts nodes by raw name bytes (does not remove duplicates).
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Checks that names are strictly increasing.
    pub fn check_sorted(&self) -> Result<(), TreeError> {
        for (i, w) in self.nodes.windows(2).enumerate() {
            if w[0].name >= w[1].name {
                return Err(TreeError::NotSorted {
                    index: i + 1,
                    name: w[1].name_lossy(),
                });
            }
        }
        Ok(())
    }

    /// The exact tree blob bytes restic writes: `{"nodes":[…]}\n`.
    /// Fails if nodes are unsorted/duplicated or a time is out of range.
    pub fn encode(&self) -> Result<Vec<u8>, TreeError> {
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 400);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the tree blob bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), TreeError> {
        self.check_sorted()?;
        out.extend_from_slice(b"{\"nodes\":[");
        for (i, n) in self.nodes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            n.encode_into(out)?;
        }
        out.extend_from_slice(b"]}\n");
        Ok(())
    }

    /// The tree blob bytes and their ID.
    pub fn encode_with_id(&self) -> Result<(Vec<u8>, Id), TreeError> {
        let bytes = self.encode()?;
        let id = Id::hash(&bytes);
        Ok((bytes, id))
    }

    /// Decodes a tree blob (unknown keys ignored; order not enforced).
    pub fn decode(data: &[u8]) -> Result<Tree, TreeError> {
        let tj: TreeJson = serde_json::from_slice(data)?;
        let nodes = tj
            .nodes
            .into_iter()
            .map(NodeJson::into_node)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tree { nodes })
    }

    /// Finds a node by raw name (binary search; the tree must be sorted).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .and_then(|i| self.nodes.get(i))
    }
}

#[derive(Deserialize)]
struct TreeJson {
    #[serde(default, deserialize_with = "null_default")]
    nodes: Vec<NodeJson>,
}

#[derive(Deserialize)]
struct NodeJson {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    node_type: String,
    #[serde(default, deserialize_with = "null_default")]
    mode: u32,
    #[serde(default)]
    mtime: GoTime,
    #[serde(default)]
    atime: GoTime,
    #[serde(default)]
    ctime: GoTime,
    #[serde(default, deserialize_with = "null_default")]
    uid: u32,
    #[serde(default, deserialize_with = "null_default")]
    gid: u32,
    #[serde(default, deserialize_with = "null_default")]
    user: String,
    #[serde(default, deserialize_with = "null_default")]
    group: String,
    #[serde(default, deserialize_with = "null_default")]
    inode: u64,
    #[serde(default, deserialize_with = "null_default")]
    device_id: u64,
    #[serde(default, deserialize_with = "null_default")]
    size: u64,
    #[serde(default, deserialize_with = "null_default")]
    links: u64,
    #[serde(default, deserialize_with = "null_default")]
    linktarget: String,
    #[serde(default)]
    linktarget_raw: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    extended_attributes: Vec<XattrJson>,
    #[serde(default, deserialize_with = "null_default")]
    generic_attributes: BTreeMap<String, Box<RawValue>>,
    #[serde(default, deserialize_with = "null_default")]
    device: u64,
    #[serde(default)]
    content: Option<Vec<Id>>,
    #[serde(default)]
    subtree: Option<Id>,
    #[serde(default, deserialize_with = "null_default")]
    error: String,
}

#[derive(Deserialize)]
struct XattrJson {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(default, deserialize_with = "opt_string")]
    value: Option<String>,
}

fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

fn b64(s: &str, node: &str) -> Result<Vec<u8>, TreeError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|_| TreeError::InvalidBase64(node.to_owned()))
}

impl NodeJson {
    fn into_node(self) -> Result<Node, TreeError> {
        let name =
            unquote_inner(&self.name).ok_or_else(|| TreeError::InvalidName(self.name.clone()))?;
        let linktarget = match &self.linktarget_raw {
            Some(raw) if !raw.is_empty() => b64(raw, &self.name)?,
            _ => self.linktarget.into_bytes(),
        };
        let extended_attributes = self
            .extended_attributes
            .into_iter()
            .map(|x| {
                Ok(ExtendedAttribute {
                    name: x.name.into_bytes(),
                    value: match x.value {
                        None => None,
                        Some(v) => Some(b64(&v, &self.name)?),
                    },
                })
            })
            .collect::<Result<Vec<_>, TreeError>>()?;
        Ok(Node {
            name,
            node_type: NodeType::from_name(&self.node_type),
            mode: self.mode,
            mtime: self.mtime,
            atime: self.atime,
            ctime: self.ctime,
            uid: self.uid,
            gid: self.gid,
            user: self.user.into_bytes(),
            group: self.group.into_bytes(),
            inode: self.inode,
            device_id: self.device_id,
            size: self.size,
            links: self.links,
            linktarget,
            extended_attributes,
            generic_attributes: self
                .generic_attributes
                .into_iter()
                .map(|(k, v)| (k, v.get().as_bytes().to_vec()))
                .collect(),
            device: self.device,
            content: self.content,
            subtree: self.subtree,
            error: self.error,
        })
    }
}

#[cfg(test)]
mod tests;
