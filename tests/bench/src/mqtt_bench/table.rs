//! The tables `eg-mqtt-bench` prints: one per section, a row per measure, a column per broker,
//! in Markdown so a run can be pasted into a report as it is. Formatting only.

/// A table being filled.
#[derive(Debug)]
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a first column `first` and a column per name in `columns`.
    pub fn new(title: &str, first: &str, columns: &[&str]) -> Table {
        let mut header = vec![first.to_string()];
        header.extend(columns.iter().map(|c| c.to_string()));
        Table {
            title: title.to_string(),
            header,
            rows: Vec::new(),
        }
    }

    /// A row: its label, then one cell per column (missing cells are blank).
    pub fn row(&mut self, label: &str, cells: Vec<String>) {
        let mut row = vec![label.to_string()];
        row.extend(cells);
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// The table as Markdown, columns padded to their widest cell.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
                    // Markdown wants at least three dashes under a header.
                    .max(3)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i == 0 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = format!("\n### {}\n\n", self.title);
        out.push_str(&line(&self.header));
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == 0 {
                    "-".repeat(*w)
                } else {
                    format!("{}:", "-".repeat(w.saturating_sub(1)))
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", rule.join(" | ")));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// An integer with thousands separated by commas ("12,345"), for msg/s and sizes.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_markdown_with_aligned_columns() {
        let mut t = Table::new("Title", "case", &["a", "bb"]);
        t.row("x", vec!["1".into(), "22222".into()]);
        t.row("longer", vec!["3".into()]);
        assert_eq!(
            t.render(),
            "\n### Title\n\n\
             | case   |   a |    bb |\n\
             | ------ | --: | ----: |\n\
             | x      |   1 | 22222 |\n\
             | longer |   3 |       |\n"
        );
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
