//! Fuzz target `lock`: see [`restix_fuzz::targets::lock`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::lock(data);
});
