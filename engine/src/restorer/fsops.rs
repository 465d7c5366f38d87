//! Thin, checked wrappers around the POSIX calls the restorer needs that std
//! does not offer without following symlinks: `lchown`, `utimensat` with
//! `AT_SYMLINK_NOFOLLOW`, `mkfifo`, `mknod`, `lsetxattr`, `geteuid`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use restix_repo_format::GoTime;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// True when running as root (devices and foreign ownership need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `lchown(path, uid, gid)`: never follows a symlink.
pub fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let p = c_path(path)?;
    // SAFETY: `p` is a valid NUL-terminated string that outlives the call.
    check(unsafe { libc::lchown(p.as_ptr(), uid, gid) })
}

fn timespec(t: &GoTime) -> libc::timespec {
    libc::timespec {
        tv_sec: t.unix_seconds as libc::time_t,
        tv_nsec: libc::c_long::from(t.nanos.min(999_999_999) as i32),
    }
}

/// Set atime and mtime without following a symlink at `path`.
pub fn set_times_nofollow(path: &Path, atime: &GoTime, mtime: &GoTime) -> io::Result<()> {
    let p = c_path(path)?;
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: `p` is NUL-terminated and `times` is an array of exactly the two
    // timespecs utimensat reads; both outlive the call.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Create a FIFO with permission bits `perm`.
pub fn mkfifo(path: &Path, perm: u32) -> io::Result<()> {
    let p = c_path(path)?;
    // SAFETY: `p` is a valid NUL-terminated string that outlives the call.
    check(unsafe { libc::mkfifo(p.as_ptr(), perm as libc::mode_t) })
}

/// Create a block (`char_device == false`) or character device.
pub fn mknod(path: &Path, perm: u32, char_device: bool, device: u64) -> io::Result<()> {
    let p = c_path(path)?;
    let kind = if char_device {
        libc::S_IFCHR
    } else {
        libc::S_IFBLK
    };
    // SAFETY: `p` is a valid NUL-terminated string that outlives the call.
    check(unsafe {
        libc::mknod(
            p.as_ptr(),
            kind | perm as libc::mode_t,
            device as libc::dev_t,
        )
    })
}

/// Set one extended attribute on `path` itself (not a symlink's target).
pub fn lsetxattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let p = c_path(path)?;
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `p` and `n` are NUL-terminated; `value` points to `value.len()`
    // readable bytes; all outlive the call.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast::<libc::c_void>(),
            value.len(),
            0,
        )
    })
}
