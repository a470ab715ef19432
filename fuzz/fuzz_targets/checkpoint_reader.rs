//! The checkpoint reader over arbitrary bytes: a typed result, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    snapkv::__fuzz::checkpoint_reader(data);
});
