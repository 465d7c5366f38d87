//! Fuzz target `cli_args`: see [`restix_fuzz::targets::cli_args`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::cli_args(data);
});
