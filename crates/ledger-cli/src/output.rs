//! Writing results: buffered standard output that ends quietly on a closed pipe, JSON
//! lines, CSV. Data goes to standard output, summaries and notes to standard error, so a
//! pipeline gets only the data.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::exit::{CliError, stdout_error};

/// Where rows go: standard output or a file.
pub struct Sink {
    out: BufWriter<Box<dyn Write>>,
    /// `None` for standard output.
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("path", &self.path).finish()
    }
}

impl Sink {
    /// Buffered standard output.
    pub fn stdout() -> Sink {
        Sink {
            out: BufWriter::with_capacity(1 << 16, Box::new(io::stdout().lock())),
            path: None,
        }
    }

    /// A new file (replaced if it exists); `-` is standard output.
    pub fn create(path: &Path) -> Result<Sink, CliError> {
        if path == Path::new("-") {
            return Ok(Sink::stdout());
        }
        let file = File::create(path).map_err(|e| CliError::io(path, &e))?;
        Ok(Sink {
            out: BufWriter::with_capacity(1 << 16, Box::new(file)),
            path: Some(path.to_path_buf()),
        })
    }

    fn error(&self, error: io::Error) -> CliError {
        match &self.path {
            None => stdout_error(error),
            Some(path) => CliError::io(path, &error),
        }
    }

    /// One line of text.
    pub fn line(&mut self, text: impl std::fmt::Display) -> Result<(), CliError> {
        writeln!(self.out, "{text}").map_err(|e| self.error(e))
    }

    /// One JSON object on one line.
    pub fn json(&mut self, value: &impl Serialize) -> Result<(), CliError> {
        serde_json::to_writer(&mut self.out, value)
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| self.error(e))
    }

    /// Flushes; call before returning so a late write error is not lost.
    pub fn finish(mut self) -> Result<(), CliError> {
        self.out.flush().map_err(|e| self.error(e))
    }
}

/// A fixed-width text table: a header row and aligned columns, for people (`--json` is
/// the format for scripts).
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self, sink: &mut Sink) -> Result<(), CliError> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c).map(String::len))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                if !line.is_empty() {
                    line.push_str("  ");
                }
                line.push_str(&format!("{cell:<width$}"));
            }
            sink.line(line.trim_end())?;
        }
        Ok(())
    }
}
