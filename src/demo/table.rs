//! The live table of job resources: rows from their status, laid out in columns, redrawn in place
//! on a terminal and printed as changed lines otherwise.

use std::fmt::Write as _;
use std::time::Instant;

use crate::api::{JobStatus, Phase};
use crate::output::StdoutError;

/// One job resource as the table shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Row {
    /// Manifest kind.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// `status.phase`; `None` until the operator wrote one.
    pub phase: Option<Phase>,
    /// The BlueKing job id.
    pub job: Option<String>,
    /// Targets that succeeded, as the last status write counted them.
    pub ok: Option<u32>,
    /// Targets that failed.
    pub failed: Option<u32>,
    /// `status.message`, else the run's reason.
    pub message: String,
}

impl Row {
    /// A row from an object's status (absent or unreadable status: an empty row).
    pub fn from_status(kind: &str, name: &str, status: Option<&JobStatus>) -> Row {
        let mut row = Row {
            kind: kind.to_owned(),
            name: name.to_owned(),
            ..Row::default()
        };
        let Some(status) = status else {
            return row;
        };
        row.phase = status.phase;
        if let Some(run) = &status.run {
            row.job = run.job_id.clone();
            if let Some(summary) = &run.summary {
                row.ok = Some(summary.succeeded);
                row.failed = Some(summary.failed);
            }
            row.message = run.reason.clone().unwrap_or_default();
        }
        if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
            row.message = message.to_owned();
        }
        row
    }

    /// Whether the run is over.
    pub fn is_final(&self) -> bool {
        self.phase.is_some_and(Phase::is_final)
    }
}

/// Column widths and colours.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    kind: usize,
    name: usize,
    message: usize,
    color: bool,
}

const PHASE_WIDTH: usize = 14; // "WaitingForUser"
const JOB_WIDTH: usize = 6;
const TARGETS_WIDTH: usize = 9; // "OK/FAILED"
/// Message width when the terminal's is unknown.
const DEFAULT_MESSAGE_WIDTH: usize = 60;

impl Layout {
    /// Columns wide enough for these rows; the message gets what is left of `columns`.
    pub fn new(rows: &[Row], color: bool, columns: Option<usize>) -> Layout {
        let kind = rows.iter().map(|r| r.kind.len()).max().unwrap_or(0).max(4);
        let name = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
        let fixed = kind + name + PHASE_WIDTH + JOB_WIDTH + TARGETS_WIDTH + 5 * 2;
        let message = columns
            .map(|c| c.saturating_sub(fixed + 1).max(20))
            .unwrap_or(DEFAULT_MESSAGE_WIDTH);
        Layout {
            kind,
            name,
            message,
            color,
        }
    }

    /// The header line.
    pub fn header(&self) -> String {
        self.columns(
            "KIND",
            "NAME",
            &format!("{:<PHASE_WIDTH$}", "PHASE"),
            "JOB",
            "OK/FAILED",
            "MESSAGE",
        )
    }

    /// One row.
    pub fn line(&self, row: &Row) -> String {
        let phase = row.phase.map(Phase::as_str).unwrap_or("-");
        let padded = format!("{phase:<PHASE_WIDTH$}");
        let phase = match (self.color, row.phase.map(phase_color)) {
            (true, Some(code)) => format!("\x1b[{code}m{padded}\x1b[0m"),
            _ => padded,
        };
        let targets = match (row.ok, row.failed) {
            (Some(ok), Some(failed)) => format!("{ok}/{failed}"),
            _ => "-".to_owned(),
        };
        self.columns(
            &row.kind,
            &row.name,
            &phase,
            row.job.as_deref().unwrap_or("-"),
            &targets,
            &truncate(&row.message, self.message),
        )
    }

    /// Truncates a free-text line to the table's width.
    pub fn fit(&self, text: &str) -> String {
        truncate(text, self.width())
    }

    fn width(&self) -> usize {
        self.kind + self.name + PHASE_WIDTH + JOB_WIDTH + TARGETS_WIDTH + 5 * 2 + self.message
    }

    fn columns(
        &self,
        kind: &str,
        name: &str,
        phase: &str,
        job: &str,
        targets: &str,
        message: &str,
    ) -> String {
        let line = format!(
            "{kind:<kw$}  {name:<nw$}  {phase}  {job:<JOB_WIDTH$}  {targets:<TARGETS_WIDTH$}  {message}",
            kw = self.kind,
            nw = self.name,
        );
        line.trim_end().to_owned()
    }
}

/// The ANSI colour of a phase.
fn phase_color(phase: Phase) -> &'static str {
    match phase {
        Phase::Succeeded => "32",
        Phase::Failed | Phase::Unknown => "31",
        Phase::Cancelled => "35",
        Phase::WaitingForUser => "33",
        Phase::Running | Phase::Submitting => "36",
        Phase::Pending | Phase::Suspended => "2",
    }
}

/// At most `max` characters, the last one `…` when cut; line breaks become spaces.
pub(super) fn truncate(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The table as it is shown while the runs go on.
pub(super) struct Live {
    layout: Layout,
    tty: bool,
    started: Instant,
    /// Lines drawn last time (terminal), to move back over.
    drawn: usize,
    /// What each row looked like when last printed (not a terminal).
    last: Vec<String>,
    notes: Vec<String>,
    header_printed: bool,
}

/// Notes kept under the table on a terminal.
const NOTES_SHOWN: usize = 6;

impl Live {
    /// A table that redraws in place when `tty`, else prints changed rows.
    pub fn new(layout: Layout, tty: bool) -> Live {
        Live {
            layout,
            tty,
            started: Instant::now(),
            drawn: 0,
            last: Vec::new(),
            notes: Vec::new(),
            header_printed: false,
        }
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Seconds since the table started, as a prefix.
    fn stamp(&self) -> String {
        format!("[{:>5.1}s]", self.started.elapsed().as_secs_f32())
    }

    /// Something the demo did or saw, shown under the table (terminal) or printed now.
    pub fn note(&mut self, text: impl Into<String>) -> Result<(), StdoutError> {
        let text = format!("{} {}", self.stamp(), text.into());
        if self.tty {
            self.notes.push(text);
            Ok(())
        } else {
            crate::outln!("{text}")
        }
    }

    /// Shows the rows; `footer` is a status line shown on a terminal only.
    pub fn draw(&mut self, rows: &[Row], footer: &str) -> Result<(), StdoutError> {
        let mut text = String::new();
        if self.tty {
            let mut lines = vec![self.layout.header()];
            lines.extend(rows.iter().map(|r| self.layout.line(r)));
            lines.push(String::new());
            let skip = self.notes.len().saturating_sub(NOTES_SHOWN);
            lines.extend(self.notes[skip..].iter().map(|n| self.layout.fit(n)));
            lines.push(self.layout.fit(footer));
            if self.drawn > 0 {
                // Back to the first line drawn last time, then clear everything below.
                let _ = write!(text, "\x1b[{}F\x1b[J", self.drawn);
            }
            for line in &lines {
                text.push_str(line);
                text.push('\n');
            }
            self.drawn = lines.len();
        } else {
            if !self.header_printed {
                let _ = writeln!(text, "{:9}{}", "", self.layout.header());
                self.header_printed = true;
            }
            self.last.resize(rows.len(), String::new());
            let stamp = self.stamp();
            for (row, last) in rows.iter().zip(self.last.iter_mut()) {
                let line = self.layout.line(row);
                if *last != line {
                    let _ = writeln!(text, "{stamp} {line}");
                    *last = line;
                }
            }
        }
        crate::out!("{text}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn truncates_by_characters() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        assert_eq!(truncate("a bit too long", 10), "a bit too…");
        assert_eq!(truncate("二三四五六", 3), "二三…");
        assert_eq!(truncate("a\nb", 5), "a b");
    }

    #[test]
    fn rows_read_status() {
        let status: JobStatus = serde_json::from_value(serde_json::json!({
            "phase": "Failed",
            "message": "1 of 3 targets failed",
            "run": {"key": "k", "generation": 1, "attempt": 1, "specHash": "h", "retries": 0,
                    "phase": "Failed", "jobId": "7", "adopted": false, "started": true,
                    "summary": {"total": 3, "succeeded": 2, "failed": 1, "running": 0,
                                "pending": 0, "ignored": 0}}
        }))
        .unwrap();
        let row = Row::from_status("AgentJob", "a", Some(&status));
        assert_eq!(row.phase, Some(Phase::Failed));
        assert_eq!(row.job.as_deref(), Some("7"));
        assert_eq!((row.ok, row.failed), (Some(2), Some(1)));
        assert!(row.is_final());
        let layout = Layout::new(std::slice::from_ref(&row), false, None);
        let line = layout.line(&row);
        assert!(line.starts_with("AgentJob  a     Failed"), "{line}");
        assert!(line.contains(" 7 ") && line.contains("2/1") && line.ends_with("failed"));
        let empty = Row::from_status("Taskflow", "b", None);
        assert!(!empty.is_final());
        assert!(layout.line(&empty).contains(" -  "));
        let colored = Layout::new(std::slice::from_ref(&row), true, Some(80)).line(&row);
        assert!(colored.contains("\x1b[31mFailed"));
    }
}
