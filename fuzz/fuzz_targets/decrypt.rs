//! Fuzz target `decrypt`: see [`restix_fuzz::targets::decrypt`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::decrypt(data);
});
