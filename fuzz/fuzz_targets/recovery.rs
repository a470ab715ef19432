//! Recovery over arbitrary directory contents (segments, checkpoints, leftovers; raw, valid
//! or damaged): a typed result, never a panic, and a recovered directory recovers again to
//! the same state.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    snapkv::__fuzz::recovery(data);
});
