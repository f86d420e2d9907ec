//! The `ailurus` binary: parse the command line, hand over to [`ailurus::cli`].

fn main() -> std::process::ExitCode {
    ailurus::cli::main()
}
