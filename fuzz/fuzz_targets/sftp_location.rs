//! Fuzz target `sftp_location`: see [`restix_fuzz::targets::sftp_location`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::sftp_location(data);
});
