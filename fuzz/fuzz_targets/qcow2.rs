//! Fuzz target `qcow2`: see [`restix_fuzz::targets::qcow2`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    restix_fuzz::targets::qcow2(data);
});
