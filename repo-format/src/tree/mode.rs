//! Go `os.FileMode` bits as restic stores them in `mode`. spec: §11.4.

/// Permission bits.
pub const MODE_PERM: u32 = 0o777;
/// Directory.
pub const MODE_DIR: u32 = 1 << 31;
/// Append-only (not stored by restic on Unix).
pub const MODE_APPEND: u32 = 1 << 30;
/// Exclusive use.
pub const MODE_EXCLUSIVE: u32 = 1 << 29;
/// Temporary file (Plan 9).
pub const MODE_TEMPORARY: u32 = 1 << 28;
/// Symbolic link.
pub const MODE_SYMLINK: u32 = 1 << 27;
/// Device file (block; with [`MODE_CHAR_DEVICE`] a character device).
pub const MODE_DEVICE: u32 = 1 << 26;
/// Named pipe (FIFO).
pub const MODE_NAMED_PIPE: u32 = 1 << 25;
/// Unix domain socket.
pub const MODE_SOCKET: u32 = 1 << 24;
/// Set-user-ID.
pub const MODE_SETUID: u32 = 1 << 23;
/// Set-group-ID.
pub const MODE_SETGID: u32 = 1 << 22;
/// Character device (together with [`MODE_DEVICE`]).
pub const MODE_CHAR_DEVICE: u32 = 1 << 21;
/// Sticky bit.
pub const MODE_STICKY: u32 = 1 << 20;
/// Non-regular file of unknown type.
pub const MODE_IRREGULAR: u32 = 1 << 19;
/// All type bits.
pub const MODE_TYPE: u32 = MODE_DIR
    | MODE_SYMLINK
    | MODE_NAMED_PIPE
    | MODE_SOCKET
    | MODE_DEVICE
    | MODE_CHAR_DEVICE
    | MODE_IRREGULAR;

const S_IFMT: u32 = 0o170_000;
const S_IFSOCK: u32 = 0o140_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFIFO: u32 = 0o010_000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;

/// Converts a POSIX `st_mode` to the Go `FileMode` value restic stores
/// (`Mode() & (ModePerm|ModeType|ModeSetuid|ModeSetgid|ModeSticky)`).
pub fn go_mode_from_unix(st_mode: u32) -> u32 {
    let mut m = st_mode & MODE_PERM;
    m |= match st_mode & S_IFMT {
        S_IFBLK => MODE_DEVICE,
        S_IFCHR => MODE_DEVICE | MODE_CHAR_DEVICE,
        S_IFDIR => MODE_DIR,
        S_IFIFO => MODE_NAMED_PIPE,
        S_IFLNK => MODE_SYMLINK,
        S_IFSOCK => MODE_SOCKET,
        _ => 0,
    };
    if st_mode & S_ISUID != 0 {
        m |= MODE_SETUID;
    }
    if st_mode & S_ISGID != 0 {
        m |= MODE_SETGID;
    }
    if st_mode & S_ISVTX != 0 {
        m |= MODE_STICKY;
    }
    m
}

/// Converts a Go `FileMode` back to a POSIX `st_mode` (type + permission +
/// setuid/setgid/sticky bits). A mode without type bits is a regular file.
pub fn unix_mode_from_go(mode: u32) -> u32 {
    let mut m = mode & MODE_PERM;
    m |= if mode & MODE_DIR != 0 {
        S_IFDIR
    } else if mode & MODE_SYMLINK != 0 {
        S_IFLNK
    } else if mode & MODE_DEVICE != 0 {
        if mode & MODE_CHAR_DEVICE != 0 {
            S_IFCHR
        } else {
            S_IFBLK
        }
    } else if mode & MODE_NAMED_PIPE != 0 {
        S_IFIFO
    } else if mode & MODE_SOCKET != 0 {
        S_IFSOCK
    } else {
        S_IFREG
    };
    if mode & MODE_SETUID != 0 {
        m |= S_ISUID;
    }
    if mode & MODE_SETGID != 0 {
        m |= S_ISGID;
    }
    if mode & MODE_STICKY != 0 {
        m |= S_ISVTX;
    }
    m
}

/// Permission bits plus setuid/setgid/sticky in POSIX form (for `chmod`).
pub fn unix_permissions_from_go(mode: u32) -> u32 {
    unix_mode_from_go(mode) & 0o7777
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        assert_eq!(go_mode_from_unix(S_IFREG | 0o644), 420);
        assert_eq!(go_mode_from_unix(S_IFDIR | 0o755), 2_147_484_141);
        assert_eq!(go_mode_from_unix(S_IFLNK | 0o777), 134_218_239);
        assert_eq!(go_mode_from_unix(S_IFIFO | 0o644), 33_554_852);
        assert_eq!(go_mode_from_unix(S_IFDIR | 0o1777), 2_148_532_735);
        for m in [
            S_IFREG | 0o4755,
            S_IFDIR | 0o2775,
            S_IFCHR | 0o600,
            S_IFBLK | 0o660,
            S_IFSOCK | 0o777,
            S_IFIFO | 0o1600,
        ] {
            assert_eq!(unix_mode_from_go(go_mode_from_unix(m)), m);
        }
        assert_eq!(unix_mode_from_go(493), S_IFREG | 0o755);
    }
}
