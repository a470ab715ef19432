//! Valid log segments built from the input, then cut and damaged as the input says: the
//! reader never panics and never returns a frame that was not written.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    snapkv::__fuzz::segment_damage(data);
});
