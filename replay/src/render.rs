//! Every report three ways: a table for people (the default), JSON (`--json`, the report's own
//! structure, amounts as strings) and CSV (`--csv`, the table's rows, RFC 4180 quoting).

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub align: Align,
}

pub fn left(name: impl Into<String>) -> Column {
    Column {
        name: name.into(),
        align: Align::Left,
    }
}

pub fn right(name: impl Into<String>) -> Column {
    Column {
        name: name.into(),
        align: Align::Right,
    }
}

/// One table of a report: facts above it, rows, total rows below it, notes last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub title: String,
    pub facts: Vec<(String, String)>,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<String>>,
    pub totals: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>, columns: &[Column]) -> Table {
        Table {
            title: title.into(),
            columns: columns.to_vec(),
            ..Table::default()
        }
    }

    pub fn fact(&mut self, label: &str, value: impl ToString) {
        self.facts.push((label.to_string(), value.to_string()));
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(
            cells.len(),
            self.columns.len(),
            "row width in {}",
            self.title
        );
        self.rows.push(cells);
    }

    pub fn total(&mut self, cells: Vec<String>) {
        debug_assert_eq!(
            cells.len(),
            self.columns.len(),
            "total width in {}",
            self.title
        );
        self.totals.push(cells);
    }

    /// Aligned columns for a terminal.
    pub fn human(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.title);
        out.push('\n');
        let label_width = self.facts.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (label, value) in &self.facts {
            out.push_str(&format!("  {label:<label_width$}  {value}\n"));
        }
        if !self.columns.is_empty() {
            out.push('\n');
            let widths = self.widths();
            let header: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
            out.push_str(&self.line(&header, &widths));
            let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            out.push_str(&self.line(&rule, &widths));
            for row in &self.rows {
                out.push_str(&self.line(row, &widths));
            }
            if !self.totals.is_empty() {
                out.push_str(&self.line(&rule, &widths));
                for row in &self.totals {
                    out.push_str(&self.line(row, &widths));
                }
            }
            if self.rows.is_empty() {
                out.push_str("(none)\n");
            }
        }
        for note in &self.notes {
            out.push_str(&format!("{note}\n"));
        }
        out
    }

    fn widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.rows
                    .iter()
                    .chain(&self.totals)
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(c.name.len())
            })
            .collect()
    }

    fn line(&self, cells: &[String], widths: &[usize]) -> String {
        let mut parts = Vec::with_capacity(cells.len());
        for ((cell, column), &width) in cells.iter().zip(&self.columns).zip(widths) {
            parts.push(match column.align {
                Align::Left => format!("{cell:<width$}"),
                Align::Right => format!("{cell:>width$}"),
            });
        }
        let mut line = parts.join("  ").trim_end().to_string();
        line.push('\n');
        line
    }

    /// The header, the rows and the total rows as CSV; a table of facts only is `field,value`.
    pub fn csv(&self) -> String {
        let mut out = String::new();
        if self.columns.is_empty() {
            out.push_str("field,value\r\n");
            for (label, value) in &self.facts {
                out.push_str(&format!("{},{}\r\n", csv_cell(label), csv_cell(value)));
            }
            return out;
        }
        let header: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
        for row in std::iter::once(&header)
            .chain(&self.rows)
            .chain(&self.totals)
        {
            let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
        out
    }
}

fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

/// How a report is printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
}

/// A report: its own structure for JSON, tables for people and CSV.
pub trait Report: Serialize {
    fn tables(&self) -> Vec<Table>;
}

/// Renders a report; CSV of a report with several tables separates them with an empty line.
pub fn render<R: Report + ?Sized>(report: &R, format: Format) -> String {
    match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(report).expect("reports serialize");
            text.push('\n');
            text
        }
        Format::Table => {
            let tables: Vec<String> = report.tables().iter().map(Table::human).collect();
            tables.join("\n")
        }
        Format::Csv => {
            let tables: Vec<String> = report.tables().iter().map(Table::csv).collect();
            tables.join("\r\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut t = Table::new("t", &[left("a"), right("b")]);
        t.row(vec!["x,y".into(), "1".into()]);
        t.row(vec!["say \"hi\"".into(), "2".into()]);
        assert_eq!(t.csv(), "a,b\r\n\"x,y\",1\r\n\"say \"\"hi\"\"\",2\r\n");
    }

    #[test]
    fn human_tables_align_numbers_right() {
        let mut t = Table::new("T", &[left("name"), right("n")]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["bb".into(), "100".into()]);
        assert_eq!(
            t.human(),
            "T\n\nname    n\n----  ---\na       1\nbb    100\n"
        );
    }
}
