//! Who and where we are: host name, user name, and cached uid/gid → name
//! lookups (NSS, like Go's `os/user` with cgo), for key files, locks,
//! snapshots and tree nodes.

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::{Mutex, OnceLock};

/// The host name (`os.Hostname()`: the kernel's node name), from the
/// `gethostname` crate. The one home of the host name for the engine and
/// the CLI.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// The current user's numeric IDs.
pub fn uid_gid() -> (u32, u32) {
    // SAFETY: getuid/getgid have no preconditions and cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// Name of the current user ("" if the uid has no passwd entry).
pub fn username() -> String {
    user_name(uid_gid().0).unwrap_or_default()
}

fn user_cache() -> &'static Mutex<HashMap<u32, Option<String>>> {
    static CACHE: OnceLock<Mutex<HashMap<u32, Option<String>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn group_cache() -> &'static Mutex<HashMap<u32, Option<String>>> {
    static CACHE: OnceLock<Mutex<HashMap<u32, Option<String>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// User name for a uid (cached), `None` if unknown.
pub fn user_name(uid: u32) -> Option<String> {
    if let Ok(cache) = user_cache().lock() {
        if let Some(v) = cache.get(&uid) {
            return v.clone();
        }
    }
    let name = lookup_user(uid);
    if let Ok(mut cache) = user_cache().lock() {
        cache.insert(uid, name.clone());
    }
    name
}

/// Group name for a gid (cached), `None` if unknown.
pub fn group_name(gid: u32) -> Option<String> {
    if let Ok(cache) = group_cache().lock() {
        if let Some(v) = cache.get(&gid) {
            return v.clone();
        }
    }
    let name = lookup_group(gid);
    if let Ok(mut cache) = group_cache().lock() {
        cache.insert(gid, name.clone());
    }
    name
}

fn lookup_user(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: passwd is plain old data; zeroed is a valid value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the duration of the call; buf is
        // writable for buf.len() bytes; result receives a pointer to pwd or null.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside buf.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) };
        return Some(String::from_utf8_lossy(name.to_bytes()).into_owned());
    }
}

fn lookup_group(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: group is plain old data; zeroed is a valid value.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in lookup_user.
        let rc = unsafe {
            libc::getgrgid_r(
                gid,
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || grp.gr_name.is_null() {
            return None;
        }
        // SAFETY: on success gr_name points to a NUL-terminated string inside buf.
        let name = unsafe { CStr::from_ptr(grp.gr_name) };
        return Some(String::from_utf8_lossy(name.to_bytes()).into_owned());
    }
}

/// True if a process with this PID exists (`kill(pid, 0)`; EPERM means it
/// exists but belongs to someone else).
pub fn process_exists(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the permission/existence check.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_lookups() {
        assert!(!hostname().is_empty());
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert!(group_name(0).is_some());
        assert!(process_exists(i64::from(std::process::id())));
        assert!(!process_exists(0));
    }
}
