//! How far verification has got: a bar on a terminal, plain lines in a log, nothing for a
//! benchmark. Written to standard error so that reports on standard output stay clean.

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
/// Lines printed over a whole run.
const LINES_PER_RUN: u64 = 10;

pub(crate) struct Reporter {
    mode: Progress,
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    next_line: u64,
}

impl Reporter {
    pub(crate) fn new(mode: Progress) -> Reporter {
        Reporter {
            mode,
            bar: None,
            total: 0,
            done: 0,
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

    /// Starts counting `total` commands.
    pub(crate) fn start(&mut self, total: u64, message: &str) {
        self.total = total;
        self.done = 0;
        self.next_line = self.line_step();
        match self.mode {
            Progress::Quiet => {}
            Progress::Bar => {
                self.finish_bar();
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} commands {per_sec} eta {eta}",
                )
                .unwrap()
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_message(message.to_string());
                self.bar = Some(bar);
            }
            Progress::Lines => line(&format!("{message}: {total} commands")),
        }
    }

    pub(crate) fn advance(&mut self, commands: u64) {
        self.done += commands;
        match self.mode {
            Progress::Quiet => {}
            Progress::Bar => {
                if self.done % BAR_UPDATE_COMMANDS < commands || self.done == self.total {
                    if let Some(bar) = &self.bar {
                        bar.set_position(self.done);
                    }
                }
            }
            Progress::Lines => {
                if self.done >= self.next_line && self.next_line > 0 && self.done < self.total {
                    let percent = self.done * 100 / self.total.max(1);
                    line(&format!(
                        "verified {}/{} commands ({percent}%)",
                        self.done, self.total
                    ));
                    self.next_line = self.done + self.line_step();
                }
            }
        }
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
