//! Fuzz target `keyfile`: see [`restix_fuzz::targets::keyfile`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::keyfile(data);
});
