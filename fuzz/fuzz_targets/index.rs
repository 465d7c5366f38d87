//! Fuzz target `index`: see [`restix_fuzz::targets::index`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::index(data);
});
