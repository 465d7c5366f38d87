//! Fuzz target `unpacked`: see [`restix_fuzz::targets::unpacked`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::unpacked(data);
});
