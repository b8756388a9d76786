//! The `evergreen` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    evergreen::cli::main()
}
