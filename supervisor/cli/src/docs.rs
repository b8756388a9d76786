//! The man pages and shell completions, generated from the clap definitions in [`crate::cli`]
//! so they never drift from `--help`: `evergreen completions SHELL` prints a completion script,
//! the hidden `evergreen man` prints or writes the pages. The packages ship copies committed
//! under `packaging/` (packaging/generate-docs.sh writes them; a test fails when they are
//! stale), so a cross-compiled package needs no run of its binary.
//!
//! What clap cannot say (exit statuses, files, see also) is written here, once, as the extra
//! sections of `evergreen(1)`.

use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;

/// The shells `evergreen completions` writes for.
pub use clap_complete::Shell;

/// The command line as the pages and completions describe it: the crate's version (not a
/// release stamp, so the committed pages do not change with every build).
fn command() -> clap::Command {
    Cli::command().version(env!("CARGO_PKG_VERSION"))
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command(), "evergreen", &mut out);
    out
}

/// Every man page: `evergreen.1`, then `evergreen-<command>.1` for each visible command, as
/// (file name, roff text).
pub fn man_pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = command();
    cmd.build();
    let mut pages = Vec::new();
    let mut top = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone()).date(MAN_DATE);
    man.render_title(&mut top)?;
    man.render_name_section(&mut top)?;
    man.render_synopsis_section(&mut top)?;
    man.render_description_section(&mut top)?;
    top.write_all(DESCRIPTION_MORE.as_bytes())?;
    man.render_options_section(&mut top)?;
    man.render_subcommands_section(&mut top)?;
    top.write_all(EXTRA_SECTIONS.as_bytes())?;
    pages.push(("evergreen.1".to_string(), top));
    // clap's own `help` command is `--help` again: no page of its own.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("evergreen-{}", sub.get_name());
        // Named as a page of its own, so its NAME and SYNOPSIS read `evergreen-status`.
        let sub = sub
            .clone()
            .name(name.clone())
            .version(env!("CARGO_PKG_VERSION"));
        let mut page = Vec::new();
        clap_mangen::Man::new(sub)
            .date(MAN_DATE)
            .source(format!("evergreen {}", env!("CARGO_PKG_VERSION")))
            .render(&mut page)?;
        page.write_all(SUB_SEE_ALSO.as_bytes())?;
        pages.push((format!("{name}.1"), page));
    }
    Ok(pages)
}

/// Writes every man page into `dir` (created if missing).
pub fn write_man_pages(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, text) in man_pages()? {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// The pages' date: fixed, so that generating them twice gives the same files (reproducible
/// packages); packaging/generate-docs.sh is run when the command line changes, and the
/// version in the title says which release they describe.
const MAN_DATE: &str = "2026-12-07";

/// What the hand-written page said beyond `--help`, kept: where the runtime and its
/// configuration live when installed from the package.
const DESCRIPTION_MORE: &str = r#".PP
\fBevergreen\fR runs a Greengrass V1 style group on a gateway: it starts the group's
connectors and functions as child processes (in Linux namespaces and cgroups for container
mode, or plainly), routes their messages along the group's subscriptions, serves client
devices over MQTT, bridges to the cloud, and restarts what fails. The same binary is the
command line that deploys groups to a running runtime and inspects it, and the operator's
tool for fleets.
.PP
Installed from the package, the runtime is the \fBevergreen\fR systemd service, reading
\fI/etc/evergreen/config.json\fR; every command reads that file too when it exists.
Every command takes \fB\-\-help\fR, and has a page of its own: \fBevergreen\-status\fR(1),
\fBevergreen\-deploy\fR(1), and so on. Commands that print data take \fB\-\-json\fR
(see \fI/usr/share/doc/evergreen/cli.md\fR).
"#;

const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
0 on success; 1 on failure; 2 when \fBcheck\fR's worst finding is a warning; 64 for a
command\-line mistake (and \fBreset\fR without \fB\-\-yes\fR when standard input is not a
terminal); 75 when another runtime holds the root; 78 for an invalid configuration or group
(the unit is not restarted); 80 when the runtime stopped to start again onto another release
(the unit starts it again).
.SH FILES
.TP
\fI/etc/evergreen/config.json\fR
The core configuration (only the keys that differ from the defaults; every key is in
\fI/usr/share/doc/evergreen/config.defaults.json\fR).
.TP
\fI/var/lib/evergreen\fR
The runtime root: group versions, deployments, spool, releases, logs under \fIvar/log\fR.
.TP
\fI/run/evergreen/control.sock\fR
The control socket the commands use.
.TP
\fI/var/lib/evergreen/status-page.token\fR
The status page's generated token (mode 0600), when \fBevergreen.statusPage\fR is on
without a token of its own.
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fI/usr/share/doc/evergreen/README.md\fR and the
reference pages beside it in \fI/usr/share/doc/evergreen/docs/\fR
"#;

const SUB_SEE_ALSO: &str = r#".SH "SEE ALSO"
\fBevergreen\fR(1)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_command_has_a_page_and_pages_do_not_change_between_runs() {
        let pages = man_pages().expect("render");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for expected in [
            "evergreen.1",
            "evergreen-status.1",
            "evergreen-stop.1",
            "evergreen-completions.1",
        ] {
            assert!(names.contains(&expected), "{names:?}");
        }
        assert!(
            !names.contains(&"evergreen-connector.1"),
            "hidden commands have no page"
        );
        assert!(
            !names.contains(&"evergreen-man.1"),
            "hidden commands have no page"
        );
        assert_eq!(pages, man_pages().expect("again"));
        let top = String::from_utf8_lossy(&pages[0].1).into_owned();
        assert!(top.contains(".SH \"EXIT STATUS\""), "{top}");
        assert!(top.contains("/run/evergreen/control.sock"), "{top}");
    }

    #[test]
    fn completions_name_the_commands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(completions(shell)).expect("utf-8");
            assert!(text.contains("deployments"), "{shell}: {text}");
            assert!(text.contains("support-bundle"), "{shell}");
        }
    }
}
