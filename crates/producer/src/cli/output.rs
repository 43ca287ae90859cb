//! How the operator commands print their result on stdout: with `--json`, one JSON document (the
//! operator API's shape); otherwise a table with aligned columns, or aligned `name  value` lines
//! for one record. What a table or a field line prints passes through [`clean`]: text from jobs
//! and dead letters (error messages, raw fields) never puts a control character — an ANSI or OSC
//! escape sequence, say — on the operator's terminal.

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;

/// The output flag every operator command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct OutputArgs {
    /// Print JSON (as the operator API answers) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

impl OutputArgs {
    /// Prints `value`: as JSON with `--json`, else as `table` renders it.
    pub(crate) fn print<T: Serialize + ?Sized>(
        &self,
        value: &T,
        table: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(value)?);
        } else {
            print!("{}", table(value));
        }
        Ok(())
    }
}

/// A table: a header and rows of cells, printed with each column as wide as its widest cell.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with columns `header`.
    pub(crate) fn new(header: &[&'static str]) -> Self {
        Self { header: header.to_vec(), rows: Vec::new() }
    }

    /// Adds a row (cells beyond the header's columns are dropped; missing ones are blank).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The header, then each row, columns two spaces apart, no trailing spaces; `(none)` under the
    /// header when there are no rows.
    pub(crate) fn render(&self) -> String {
        let columns = self.header.len();
        let cell = |row: &[String], i: usize| clean(row.get(i).map(String::as_str).unwrap_or(""));
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, width) in widths.iter_mut().enumerate() {
                *width = (*width).max(cell(row, i).chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let mut out = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 < columns {
                    out.push_str(&format!("{c:<w$}  ", w = widths[i]));
                } else {
                    out.push_str(c);
                }
            }
            out.trim_end().to_owned() + "\n"
        };
        let mut out = line(self.header.iter().map(|h| (*h).to_owned()).collect());
        if self.rows.is_empty() {
            out.push_str("(none)\n");
        }
        for row in &self.rows {
            out.push_str(&line((0..columns).map(|i| cell(row, i)).collect()));
        }
        out
    }
}

/// `name  value` lines, names padded to the longest; a value of `None` is left out.
pub(crate) fn fields(pairs: &[(&str, Option<String>)]) -> String {
    let width = pairs.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref().map(|v| format!("{k:<width$}  {}", clean(v)).trim_end().to_owned() + "\n")
        })
        .collect()
}

/// A time as the tables show it: UTC, to the second.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `text` fit for one line of a terminal: line breaks and tabs as spaces, and every other control
/// character ([`char::is_control`]: ESC, BEL, DEL, C1 codes such as CSI …) escaped as `\u{..}`.
pub(crate) fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

/// `text` [`clean`]ed and cut to `max` characters, with `…` when it was longer.
pub(crate) fn short(text: &str, max: usize) -> String {
    let text = clean(text);
    if text.chars().count() <= max {
        return text;
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `yes` or `no`.
pub(crate) fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_its_columns() {
        let mut t = Table::new(&["ID", "STATUS", "NOTE"]);
        t.row(vec!["a".into(), "completed".into(), "x".into()]);
        t.row(vec!["long-id".into(), "ok".into()]);
        assert_eq!(t.render(), "ID       STATUS     NOTE\na        completed  x\nlong-id  ok\n");
        assert_eq!(Table::new(&["ID", "STATUS"]).render(), "ID  STATUS\n(none)\n");
    }

    #[test]
    fn fields_align_names_and_skip_absent_values() {
        let out =
            fields(&[("job_id", Some("j1".into())), ("error", None), ("max_attempts", Some("5".into()))]);
        assert_eq!(out, "job_id        j1\nmax_attempts  5\n");
    }

    #[test]
    fn short_cuts_long_text() {
        assert_eq!(short("abc", 5), "abc");
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(short("a\nb", 5), "a b");
    }

    /// Text with an ANSI colour, a cursor move, an OSC 8 hyperlink and a title change, BEL, DEL
    /// and a C1 CSI.
    const HOSTILE: &str =
        "\u{1b}[31mred\u{1b}[2J\u{1b}]8;;http://x\u{7}link\u{1b}]0;title\u{7}\u{7f}\u{9b}0m";

    fn no_control(s: &str) {
        assert!(!s.chars().any(|c| c.is_control() && c != '\n'), "{s:?}");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(clean("a\u{1b}[31mb\tc\r\nd\u{9b}"), "a\\u{1b}[31mb c  d\\u{9b}");
        no_control(&clean(HOSTILE));
        no_control(&short(HOSTILE, 10));
        assert!(short(HOSTILE, 200).contains("\\u{1b}]8;;http://x\\u{7}link"), "{}", short(HOSTILE, 200));
        let mut t = Table::new(&["ID", "ERROR"]);
        t.row(vec!["a".into(), HOSTILE.into()]);
        t.row(vec![HOSTILE.into(), "b".into()]);
        let table = t.render();
        no_control(&table);
        assert_eq!(table.lines().count(), 3, "{table}");
        let lines = fields(&[("error", Some(HOSTILE.into())), ("x", Some("multi\nline".into()))]);
        no_control(&lines);
        assert_eq!(lines.lines().count(), 2, "{lines}");
    }
}
