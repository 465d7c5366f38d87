//! Fuzz target `decompress`: see [`restix_fuzz::targets::decompress`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::decompress(data);
});
