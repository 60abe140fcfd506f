//! The `vfio` binary; see the `vfio_tool` crate docs.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = vfio_tool::run(
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
