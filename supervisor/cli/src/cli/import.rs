//! `evergreen import`: the command line around `evergreen_import` — options, writing the group
//! file (and any inline function code beside it), the report on stderr and the exit status.
//! What is imported and how is the library's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use evergreen_import::{Finding, Import, Level, Options, Source};

/// `evergreen import`'s options.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Saved `aws greengrass get-group-version` / `get-*-definition-version` outputs (files, a
    /// directory of them, or one combined JSON), or CloudFormation templates (JSON or YAML).
    #[arg(value_name = "INPUT", required = true)]
    inputs: Vec<PathBuf>,
    /// What the inputs are: `cli` outputs, `cloudformation` templates, or `auto` (told by
    /// their content).
    #[arg(long = "from", value_name = "KIND", default_value = "auto")]
    from: FromArg,
    /// Write the group file here (and a template's inline function code beside it, under
    /// functions/) instead of printing the group on stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print the report on stderr as JSON: {"status","output","todo","notes","validation","files"}.
    #[arg(long)]
    json: bool,
    /// The region `AWS::Region` stands for in templates [default: a placeholder the report lists].
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// The account id `AWS::AccountId` stands for in templates [default: a placeholder the
    /// report lists].
    #[arg(long, value_name = "ACCOUNT")]
    account: Option<String>,
}

/// `--from`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FromArg {
    Auto,
    Cli,
    Cloudformation,
}

/// Exit status when the group was written but the user must finish it.
const EXIT_INCOMPLETE: u8 = 2;

pub(crate) fn command(args: ImportArgs) -> ExitCode {
    if let Some(problem) = option_problem(&args) {
        return unusable(&args, &problem);
    }
    let options = Options {
        source: match args.from {
            FromArg::Auto => Source::Auto,
            FromArg::Cli => Source::Cli,
            FromArg::Cloudformation => Source::CloudFormation,
        },
        region: args.region.clone(),
        account: args.account.clone(),
        write_code: args.output.is_some(),
        registry: crate::catalogue::registry(),
    };
    let mut import = match evergreen_import::import(&args.inputs, &options) {
        Ok(import) => import,
        Err(e) => return unusable(&args, &e.to_string()),
    };
    let text = match serde_json::to_string_pretty(&import.group) {
        Ok(text) => text + "\n",
        Err(e) => return unusable(&args, &format!("cannot write the group as JSON: {e}")),
    };
    let (written_to, files) = match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                return unusable(&args, &format!("cannot write {}: {e}", path.display()));
            }
            let files = write_code(path, &mut import);
            (path.display().to_string(), files)
        }
        None => {
            print!("{text}");
            ("stdout".to_string(), Vec::new())
        }
    };
    if args.json {
        let mut report = import.report.to_json(&written_to);
        report["files"] = serde_json::json!(files);
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        eprint!("{}", import.report.to_text(&written_to));
        for file in &files {
            eprintln!("  wrote {file}");
        }
    }
    if import.report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    }
}

/// `--region` and `--account` go into ARNs: refuse what cannot be part of one, before reading
/// anything.
fn option_problem(args: &ImportArgs) -> Option<String> {
    if let Some(region) = &args.region {
        let ok = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Some(format!(
                "--region {region:?} is not a region (like eu-west-1)"
            ));
        }
    }
    if let Some(account) = &args.account {
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Some(format!(
                "--account {account:?} is not a 12-digit account id"
            ));
        }
    }
    None
}

/// Writes the code found in the input beside the group file; an existing file that differs is
/// left alone and becomes a to-do. Returns the paths written.
fn write_code(group_file: &Path, import: &mut Import) -> Vec<String> {
    let base = group_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut written = Vec::new();
    for code in &import.code_files {
        let path = base.join(&code.path);
        let problem = match std::fs::read_to_string(&path) {
            Ok(existing) if existing == code.contents => None,
            Ok(_) => Some(format!(
                "{} already exists and differs from the template's inline code: it was left as it is; compare them",
                path.display()
            )),
            Err(_) => {
                let created = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&path, &code.contents));
                match created {
                    Ok(()) => {
                        written.push(path.display().to_string());
                        None
                    }
                    Err(e) => Some(format!(
                        "cannot write the inline code to {}: {e}; write it there yourself",
                        path.display()
                    )),
                }
            }
        };
        if let Some(message) = problem {
            import.report.findings.push(Finding {
                level: Level::Todo,
                subject: code.path.display().to_string(),
                message,
            });
        }
    }
    written
}

/// Nothing was written: say why, and exit 1.
fn unusable(args: &ImportArgs, problem: &str) -> ExitCode {
    if args.json {
        let report = serde_json::json!({"status": "unusable", "error": problem});
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        eprintln!("evergreen import: {problem}");
    }
    ExitCode::FAILURE
}
