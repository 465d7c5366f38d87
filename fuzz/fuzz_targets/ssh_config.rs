//! Fuzz target `ssh_config`: see [`restix_fuzz::targets::ssh_config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::ssh_config(data);
});
