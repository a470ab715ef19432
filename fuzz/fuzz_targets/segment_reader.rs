//! The log segment reader over arbitrary bytes: never panics, and whatever it returns keeps
//! its contract (contiguous frames, a torn tail only where nothing was known synced).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    snapkv::__fuzz::segment_reader(data);
});
