//! Fuzz target `pack_header`: see [`restix_fuzz::targets::pack_header`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::pack_header(data);
});
