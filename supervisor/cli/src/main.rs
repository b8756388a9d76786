//! The `evergreen` binary: everything lives in the library; see `cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    // The supervisor re-executes this binary as `evergreen connector <Name>` for every
    // connector: go straight there, past the command-line parser, so a connector process
    // touches (and keeps resident) only the code it runs.
    let mut args = std::env::args_os().skip(1);
    if let (Some(command), Some(name), None) = (args.next(), args.next(), args.next()) {
        if let Some(name) = name.to_str().filter(|n| !n.starts_with('-')) {
            if command == "connector" {
                return evergreen::catalogue::run_connector(name);
            }
        }
    }
    evergreen::cli::main()
}
