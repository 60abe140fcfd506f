#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vfio_fuzz::register_access(data));
