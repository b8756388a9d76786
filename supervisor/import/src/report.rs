//! What an import tells its user: the things left to do before the group runs (`todo`), what
//! it decided on its own and why (`note`), and what `evergreen validate` says of the output.
//! This module owns the wording's shape (text for a terminal, JSON for scripts); the sentences
//! come from the modules that found each thing. Nothing an import leaves out goes unsaid:
//! every dropped property, unresolved reference and unknown connector is a finding here.

use serde_json::{json, Value};

/// How much a finding matters to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The user must do this before the group is complete.
    Todo,
    /// Said so the user knows what the import chose; nothing to do.
    Note,
}

/// One thing found while importing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    /// What it is about, in the input's words: `function TempMonitorFunction`, `connector
    /// MyTwilio`, `parameter CoreCertificateArn`, `input versions/functions.json`.
    pub subject: String,
    pub message: String,
}

/// Every finding of one import, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// `evergreen validate`'s errors on the output (`path: message`), empty when it passes.
    pub validation: Vec<String>,
}

impl Report {
    pub(crate) fn todo(&mut self, subject: impl Into<String>, message: impl Into<String>) {
        self.push(Level::Todo, subject.into(), message.into());
    }

    pub(crate) fn note(&mut self, subject: impl Into<String>, message: impl Into<String>) {
        self.push(Level::Note, subject.into(), message.into());
    }

    fn push(&mut self, level: Level, subject: String, message: String) {
        let finding = Finding {
            level,
            subject,
            message,
        };
        // The same sentence about the same thing once, however many paths lead to it.
        if !self.findings.contains(&finding) {
            self.findings.push(finding);
        }
    }

    /// The things the user must do.
    pub fn todos(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.level == Level::Todo)
    }

    /// Complete: nothing left to do and the output passes validation.
    pub fn is_complete(&self) -> bool {
        self.todos().next().is_none() && self.validation.is_empty()
    }

    /// The report for a terminal: the to-dos first, then the notes, then validation.
    pub fn to_text(&self, written_to: &str) -> String {
        let todos: Vec<&Finding> = self.todos().collect();
        let written_to = if written_to == "stdout" {
            "the group to stdout"
        } else {
            written_to
        };
        let mut out = if self.is_complete() {
            format!("evergreen import: wrote {written_to}: complete\n")
        } else {
            format!(
                "evergreen import: wrote {written_to}: incomplete, {} thing(s) to finish{}\n",
                todos.len(),
                if self.validation.is_empty() {
                    String::new()
                } else {
                    format!(" and {} validation error(s)", self.validation.len())
                }
            )
        };
        for f in &todos {
            out.push_str(&format!("  TODO {}: {}\n", f.subject, f.message));
        }
        for f in self.findings.iter().filter(|f| f.level == Level::Note) {
            out.push_str(&format!("  note {}: {}\n", f.subject, f.message));
        }
        if !self.validation.is_empty() {
            out.push_str("  `evergreen validate` says of the output:\n");
            for e in &self.validation {
                out.push_str(&format!("    {e}\n"));
            }
        }
        out
    }

    /// The report for scripts: `{"status", "output", "todo": [..], "notes": [..],
    /// "validation": [..]}`.
    pub fn to_json(&self, written_to: &str) -> Value {
        let list = |level: Level| -> Vec<Value> {
            self.findings
                .iter()
                .filter(|f| f.level == level)
                .map(|f| json!({"subject": f.subject, "message": f.message}))
                .collect()
        };
        json!({
            "status": if self.is_complete() { "complete" } else { "incomplete" },
            "output": written_to,
            "todo": list(Level::Todo),
            "notes": list(Level::Note),
            "validation": self.validation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_without_todos_or_validation_errors_is_complete() {
        let mut r = Report::default();
        r.note("function F", "its code was written to functions/F");
        assert!(r.is_complete());
        r.validation.push("$.X: wrong".into());
        assert!(!r.is_complete());
        let mut r = Report::default();
        r.todo("connector C", "not built in");
        r.todo("connector C", "not built in");
        assert_eq!(r.findings.len(), 1, "the same finding is kept once");
        assert!(!r.is_complete());
        let text = r.to_text("g.json");
        assert!(text.contains("incomplete, 1 thing(s) to finish"), "{text}");
        assert!(text.contains("TODO connector C: not built in"), "{text}");
        assert_eq!(r.to_json("g.json")["status"], "incomplete");
    }
}
