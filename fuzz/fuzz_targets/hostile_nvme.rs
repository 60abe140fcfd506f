#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vfio_fuzz::hostile_nvme(data));
