use std::process::ExitCode;

fn main() -> ExitCode {
    mysqk::cli::main()
}
