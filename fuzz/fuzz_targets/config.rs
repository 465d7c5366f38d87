//! Fuzz target `config`: see [`restix_fuzz::targets::config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::config(data);
});
