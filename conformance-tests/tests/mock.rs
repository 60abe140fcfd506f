//! The conformance suite on the simulated backend: one `#[test]` per case,
//! the same functions the real kernel runs in the QEMU guest.

use conformance_tests::cases::*;
use conformance_tests::mock;

macro_rules! mock_tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let env = mock::env().expect("mock host");
                $module::$name(&env).expect(stringify!($name));
                env.backend.host().done().expect("no faults or host errors left over");
            }
        )*
    };
}

conformance_tests::for_each_case!(mock_tests);

#[test]
fn device_agnostic_cases_pass_on_both_devices() {
    let specific = specific::<vfio_mock::MockBackend>().len();
    for c in all::<vfio_mock::MockBackend>().into_iter().skip(specific) {
        let env = mock::env().expect("mock host");
        (c.run)(&env).unwrap_or_else(|e| panic!("{}: {e:#}", c.name));
        env.backend
            .host()
            .done()
            .expect("no faults or host errors left over");
    }
}
