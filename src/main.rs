use std::process::ExitCode;

/// Knows where the driver's per-connection buffers are, so idle held
/// sessions can give their pages back (see `server::buffers`).
#[global_allocator]
static ALLOC: mysqk::server::buffers::Tracking = mysqk::server::buffers::Tracking;

fn main() -> ExitCode {
    mysqk::cli::main()
}
