//! How far verification has got: a bar on a terminal, plain lines in a log, nothing for a
//! benchmark. Written to standard error so that reports on standard output stay clean.
//!
//! Verification streams the journal, so the number of commands is not known before the end; the
//! measure is the segment files' bytes, through the commit of the last batch verified. The
//! unwritten (zero) end of the last segment is never reached, so the bar stops short of full.

use std::io::Write;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (libraries, benchmarks, tests).
    #[default]
    Quiet,
    /// An indicatif bar on standard error (a terminal).
    Bar,
    /// A plain line on standard error every tenth of the way (logs, CI).
    Lines,
}

impl Progress {
    /// A bar when standard error is a terminal, plain lines otherwise.
    pub fn for_stderr() -> Progress {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            Progress::Bar
        } else {
            Progress::Lines
        }
    }
}

/// Commands between two updates of the bar: drawing is far slower than re-executing.
const BAR_UPDATE_COMMANDS: u64 = 4_096;
const MIB: f64 = (1 << 20) as f64;
/// Lines printed over a whole run.
const LINES_PER_RUN: u64 = 10;

pub(crate) struct Reporter {
    mode: Progress,
    bar: Option<ProgressBar>,
    /// Each segment file's name and the bytes of the files before it.
    segments: Vec<(String, u64)>,
    /// The segment last reported, by index, and the bytes before it.
    segment: Option<(u64, u64)>,
    /// Bytes of all the segment files.
    total: u64,
    /// Bytes through the last batch verified.
    done: u64,
    commands: u64,
    commands_drawn: u64,
    next_line: u64,
}

impl Reporter {
    pub(crate) fn new(mode: Progress) -> Reporter {
        Reporter {
            mode,
            bar: None,
            segments: Vec::new(),
            segment: None,
            total: 0,
            done: 0,
            commands: 0,
            commands_drawn: 0,
            next_line: 0,
        }
    }

    /// Announces a phase whose length is unknown (reading and checking the segments).
    pub(crate) fn phase(&mut self, message: &str) {
        match self.mode {
            Progress::Quiet => {}
            Progress::Bar => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap());
                bar.set_message(message.to_string());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                self.finish_bar();
                self.bar = Some(bar);
            }
            Progress::Lines => line(message),
        }
    }

    /// Starts measuring the way through the segment files `segments` (paths, in index order).
    pub(crate) fn start(&mut self, segments: &[String], message: &str) {
        self.segments.clear();
        self.total = 0;
        for name in segments {
            self.segments.push((name.clone(), self.total));
            self.total += std::fs::metadata(name).map_or(0, |m| m.len());
        }
        self.segment = None;
        self.done = 0;
        self.commands = 0;
        self.commands_drawn = 0;
        self.next_line = self.line_step();
        match self.mode {
            Progress::Quiet => {}
            Progress::Bar => {
                self.finish_bar();
                let bar =
                    ProgressBar::with_draw_target(Some(self.total), ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template(
                    "{msg} [{bar:40}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap()
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_message(message.to_string());
                self.bar = Some(bar);
            }
            Progress::Lines => line(&format!(
                "{message}: {} segments, {:.1} MiB",
                segments.len(),
                self.total as f64 / MIB
            )),
        }
    }

    /// A batch whose commit is at `offset` of segment `segment` is verified, with its `commands`.
    pub(crate) fn advance(&mut self, segment: u64, offset: usize, commands: u64) {
        if self.mode == Progress::Quiet {
            return;
        }
        self.commands += commands;
        self.done = self.bytes_before(segment) + offset as u64;
        match self.mode {
            Progress::Quiet => {}
            Progress::Bar => {
                if self.commands - self.commands_drawn >= BAR_UPDATE_COMMANDS {
                    self.commands_drawn = self.commands;
                    if let Some(bar) = &self.bar {
                        bar.set_position(self.done);
                    }
                }
            }
            Progress::Lines => {
                if self.total > 0 && self.done >= self.next_line {
                    let percent = self.done * 100 / self.total.max(1);
                    line(&format!(
                        "verified {} commands, {:.1}/{:.1} MiB ({percent}%)",
                        self.commands,
                        self.done as f64 / MIB,
                        self.total as f64 / MIB
                    ));
                    self.next_line = self.done + self.line_step();
                }
            }
        }
    }

    /// The bytes of the segment files before segment `index`.
    fn bytes_before(&mut self, index: u64) -> u64 {
        if let Some((_, before)) = self.segment.filter(|&(last, _)| last == index) {
            return before;
        }
        let suffix = format!("segment-{index:06}.kjl");
        let before = self
            .segments
            .iter()
            .find(|(name, _)| name.ends_with(&suffix))
            .map_or(self.done, |&(_, before)| before);
        self.segment = Some((index, before));
        before
    }

    fn line_step(&self) -> u64 {
        self.total.div_ceil(LINES_PER_RUN).max(1)
    }

    pub(crate) fn finish(&mut self) {
        self.finish_bar();
    }

    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish_bar();
    }
}

fn line(message: &str) {
    let _ = writeln!(std::io::stderr(), "kinko-replay: {message}");
}
