//! Fuzz target `tree`: see [`restix_fuzz::targets::tree`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::tree(data);
});
