//! The commit record decoder over arbitrary bytes: never panics, and whatever decodes
//! re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    snapkv::__fuzz::record_decoder(data);
});
