//! Reading a connector's parameters from its `ComponentConfig`, with the
//! notes (problems, defaults taken, overrides seen) to log once the link is
//! up. It never fails: a bad value becomes a default and a note, because
//! group validation has already refused what the manifest forbids.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use evergreen_ipc::{ComponentConfig, LogLevel};

/// What to log about the settings, in order.
pub type Notes = Vec<(LogLevel, String)>;

/// A reader over one configuration that collects notes as it goes.
#[derive(Debug)]
pub struct Params<'a> {
    config: &'a ComponentConfig,
    notes: Notes,
}

impl<'a> Params<'a> {
    pub fn new(config: &'a ComponentConfig) -> Self {
        Params {
            config,
            notes: Vec::new(),
        }
    }

    /// The whole configuration, for what is not a parameter (region,
    /// thing name, ARN).
    pub fn config(&self) -> &'a ComponentConfig {
        self.config
    }

    /// The value as given, untrimmed.
    pub fn raw(&self, name: &str) -> Option<&'a str> {
        self.config.parameters.get(name).map(String::as_str)
    }

    /// The value trimmed (possibly empty).
    pub fn trimmed(&self, name: &str) -> Option<&'a str> {
        self.raw(name).map(str::trim)
    }

    /// The value trimmed, `None` when missing or blank.
    pub fn text(&self, name: &str) -> Option<String> {
        self.trimmed(name)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// A number, or `default` with the note
    /// "`<name>` is missing or not a number; using `<default>`".
    pub fn number<T: FromStr + Display + Copy>(&mut self, name: &str, default: T) -> T {
        match self.trimmed(name).map(str::parse::<T>) {
            Some(Ok(n)) => n,
            _ => {
                self.warn(format!(
                    "{name} is missing or not a number; using {default}"
                ));
                default
            }
        }
    }

    /// A number within `min..=max`: one outside is clamped with the note
    /// "`<name>` `<n>` is taken as `<used>`"; a missing or unreadable one is
    /// `default`, noted as in [`Params::number`].
    pub fn clamped<T: FromStr + Display + Copy + Ord>(
        &mut self,
        name: &str,
        default: T,
        min: T,
        max: T,
    ) -> T {
        match self.trimmed(name).map(str::parse::<T>) {
            Some(Ok(n)) if (min..=max).contains(&n) => n,
            Some(Ok(n)) => {
                let used = n.clamp(min, max);
                self.warn(format!("{name} {n} is taken as {used}"));
                used
            }
            _ => {
                self.warn(format!(
                    "{name} is missing or not a number; using {default}"
                ));
                default
            }
        }
    }

    /// A number of at most `max`, as given (untrimmed): a larger one is
    /// `max`, noted "`<name>` `<n>` is above `<max>`; using `<max>`"; a
    /// missing or unreadable one is `fallback`, noted "`<name>` is missing
    /// or not a number; using `<fallback_text>`".
    pub fn capped(&mut self, name: &str, max: u64, fallback: u64, fallback_text: &str) -> u64 {
        match self.raw(name).map(str::parse::<u64>) {
            Some(Ok(n)) if n <= max => n,
            Some(Ok(n)) => {
                self.warn(format!("{name} {n} is above {max}; using {max}"));
                max
            }
            _ => {
                self.warn(format!(
                    "{name} is missing or not a number; using {fallback_text}"
                ));
                fallback
            }
        }
    }

    /// A count of at least `min`, as given (untrimmed); anything else is
    /// `min`, noted with what was read ("`<name>` `Some(Ok(5))` is not a
    /// number of `<min>` or more; using `<min>`": the Debug form is the
    /// logged text operators already know).
    pub fn at_least(&mut self, name: &str, min: usize) -> usize {
        match self.raw(name).map(str::parse::<usize>) {
            Some(Ok(n)) if n >= min => n,
            other => {
                self.warn(format!(
                    "{name} {other:?} is not a number of {min} or more; using {min}"
                ));
                min
            }
        }
    }

    /// Notes a `MemorySize`-style parameter that Evergreen accepts but does
    /// not enforce (connector memory is not capped with it).
    pub fn note_memory_size(&mut self, name: &str) {
        if let Some(memory) = self.raw(name) {
            self.info(format!(
                "{name} {memory} KB noted; Evergreen does not cap the connector's memory with it"
            ));
        }
    }

    /// The base URL of `service` when the core configuration overrides it
    /// (tests point connectors at local stand-ins), without a trailing `/`,
    /// noted as "`<what>` at `<url>` (endpoint override)".
    pub fn endpoint_override(&mut self, service: &str, what: &str) -> Option<String> {
        let url = self.config.endpoints.get(service)?;
        self.info(format!("{what} at {url} (endpoint override)"));
        Some(url.trim_end_matches('/').to_string())
    }

    /// Where the resource `resource_param` names was granted, else the
    /// path in `path_param`: see [`resource_path`].
    pub fn resource_or_parameter(
        &mut self,
        resource_param: &str,
        path_param: &str,
        describe: impl FnOnce(&Path, &str) -> String,
    ) -> Option<PathBuf> {
        resource_path(
            self.config,
            &mut self.notes,
            resource_param,
            path_param,
            describe,
        )
    }

    pub fn note(&mut self, level: LogLevel, message: impl Into<String>) {
        self.notes.push((level, message.into()));
    }

    pub fn info(&mut self, message: impl Into<String>) {
        self.note(LogLevel::Info, message);
    }

    pub fn warn(&mut self, message: impl Into<String>) {
        self.note(LogLevel::Warn, message);
    }

    pub fn error(&mut self, message: impl Into<String>) {
        self.note(LogLevel::Error, message);
    }

    /// The notes, for `Component::start`.
    pub fn into_notes(self) -> Notes {
        self.notes
    }

    /// `settings` with the notes: what a `from_config` returns.
    pub fn finish<S>(self, settings: S) -> (S, Notes) {
        (settings, self.notes)
    }
}

/// Where the resource `resource_param` names was granted, else the path in
/// `path_param` (see `ComponentConfig::resource_or_parameter`), noted at
/// INFO as `describe(path, from)`; `None`, without a note (the caller says
/// what that costs), when neither is there. A free function for settings
/// readers that keep their own `notes`.
pub fn resource_path(
    config: &ComponentConfig,
    notes: &mut Notes,
    resource_param: &str,
    path_param: &str,
    describe: impl FnOnce(&Path, &str) -> String,
) -> Option<PathBuf> {
    let (path, from) = config.resource_or_parameter(resource_param, path_param)?;
    notes.push((LogLevel::Info, describe(&path, &from)));
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(params: &[(&str, &str)]) -> ComponentConfig {
        ComponentConfig::connector("arn:test", params)
    }

    #[test]
    fn numbers_fall_back_with_a_note() {
        let c = config(&[("A", " 7 "), ("B", "x"), ("C", "0"), ("D", "999")]);
        let mut p = Params::new(&c);
        assert_eq!(p.number("A", 1usize), 7);
        assert_eq!(p.number("B", 3usize), 3);
        assert_eq!(p.clamped("C", 10u64, 1, 900), 1);
        assert_eq!(p.clamped("D", 10u64, 1, 900), 900);
        assert_eq!(p.clamped("E", 10u64, 1, 900), 10);
        let notes = p.into_notes();
        assert_eq!(
            notes.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>(),
            [
                "B is missing or not a number; using 3",
                "C 0 is taken as 1",
                "D 999 is taken as 900",
                "E is missing or not a number; using 10",
            ]
        );
        assert!(notes.iter().all(|(l, _)| *l == LogLevel::Warn));
    }

    #[test]
    fn capped_numbers() {
        let c = config(&[("A", "901"), ("B", "5"), ("C", " 5")]);
        let mut p = Params::new(&c);
        assert_eq!(p.capped("A", 900, 0, "0 (off)"), 900);
        assert_eq!(p.capped("B", 900, 0, "0 (off)"), 5);
        assert_eq!(p.capped("C", 900, 0, "0 (off)"), 0, "untrimmed");
        let (_, notes) = p.finish(());
        assert_eq!(notes[0].1, "A 901 is above 900; using 900");
        assert_eq!(notes[1].1, "C is missing or not a number; using 0 (off)");
    }

    #[test]
    fn at_least_and_memory_notes() {
        let c = config(&[("Q", "5"), ("R", "x"), ("M", "64")]);
        let mut p = Params::new(&c);
        assert_eq!(p.at_least("Q", 2000), 2000);
        assert_eq!(p.at_least("R", 2000), 2000);
        p.note_memory_size("M");
        p.note_memory_size("N");
        let (_, notes) = p.finish(());
        assert_eq!(
            notes[0].1,
            "Q Some(Ok(5)) is not a number of 2000 or more; using 2000"
        );
        assert_eq!(
            notes[1].1,
            "R Some(Err(ParseIntError { kind: InvalidDigit })) is not a number of 2000 or more; using 2000"
        );
        assert_eq!(
            notes[2].1,
            "M 64 KB noted; Evergreen does not cap the connector's memory with it"
        );
        assert_eq!(notes.len(), 3);
    }

    #[test]
    fn text_is_trimmed_and_blank_is_none() {
        let c = config(&[("A", " x "), ("B", "  ")]);
        let p = Params::new(&c);
        assert_eq!(p.text("A").as_deref(), Some("x"));
        assert_eq!(p.text("B"), None);
        assert_eq!(p.raw("B"), Some("  "));
    }

    #[test]
    fn endpoint_overrides_are_noted() {
        let mut c = config(&[]);
        c.endpoints
            .insert("svc".into(), "http://127.0.0.1:9/".into());
        let mut p = Params::new(&c);
        assert_eq!(
            p.endpoint_override("svc", "Svc").as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(p.endpoint_override("other", "Other"), None);
        let (_, notes) = p.finish(());
        assert_eq!(
            notes,
            [(
                LogLevel::Info,
                "Svc at http://127.0.0.1:9/ (endpoint override)".to_string()
            )]
        );
    }
}
