//! Fuzz target `snapshot`: see [`restix_fuzz::targets::snapshot`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::snapshot(data);
});
