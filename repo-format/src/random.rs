//! Access to the operating system's CSPRNG.

/// Fills `buf` with cryptographically secure random bytes.
///
/// # Panics
/// Panics if the operating system's random source fails, which on the
/// supported platforms (Linux `getrandom(2)`) does not happen once the
/// kernel has booted; continuing without randomness would produce insecure
/// IVs and keys, so there is no safe fallback.
pub fn fill(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("operating system random source failed: {e}");
    }
}
