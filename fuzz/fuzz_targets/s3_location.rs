//! Fuzz target `s3_location`: see [`restix_fuzz::targets::s3_location`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::s3_location(data);
});
