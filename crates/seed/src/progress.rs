//! Progress of a seed run: an indicatif bar when stderr is a terminal, a plain line every 10%
//! otherwise (logs, CI), or nothing.

use std::io::{IsTerminal as _, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives the progress of one phase at a time (`users`, then `attendance`).
pub trait Progress {
    /// A phase over `total` users begins.
    fn start(&mut self, phase: &'static str, total: u64);
    /// `done` of the phase's users are written, making `rows` rows so far.
    fn update(&mut self, done: u64, rows: u64);
    /// The phase is over.
    fn finish(&mut self);
}

/// The progress report that suits stderr: a bar on a terminal, lines otherwise.
#[must_use]
pub fn for_stderr() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bar::default())
    } else {
        Box::new(Lines::new(std::io::stderr()))
    }
}

/// Reports nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _phase: &'static str, _total: u64) {}
    fn update(&mut self, _done: u64, _rows: u64) {}
    fn finish(&mut self) {}
}

/// An indicatif bar on stderr, redrawn at most a few times a second.
#[derive(Debug, Default)]
pub struct Bar {
    bar: Option<ProgressBar>,
    shown_rows: Option<u64>,
}

impl Progress for Bar {
    fn start(&mut self, phase: &'static str, total: u64) {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(5));
        let style = ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} users, {msg} ({elapsed})")
            .map_or_else(|_| ProgressStyle::default_bar(), |style| style.progress_chars("=> "));
        bar.set_style(style);
        bar.set_prefix(phase);
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(bar);
        self.shown_rows = None;
    }

    fn update(&mut self, done: u64, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            // A new message allocates: at most one per 1,000 rows.
            if self.shown_rows.is_none_or(|shown| rows >= shown + 1_000) || bar.length() == Some(done) {
                bar.set_message(format!("{rows} rows"));
                self.shown_rows = Some(rows);
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

/// A plain line at every tenth of a phase: `seed: attendance 30% (1200/4000 users, 291034 rows)`.
#[derive(Debug)]
pub struct Lines<W: Write> {
    out: W,
    phase: &'static str,
    total: u64,
    next_tenth: u64,
}

impl<W: Write> Lines<W> {
    /// Lines written to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            phase: "",
            total: 0,
            next_tenth: 1,
        }
    }

    /// Where the lines went.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Progress for Lines<W> {
    fn start(&mut self, phase: &'static str, total: u64) {
        self.phase = phase;
        self.total = total;
        self.next_tenth = 1;
    }

    fn update(&mut self, done: u64, rows: u64) {
        if self.total == 0 || done.saturating_mul(10) < self.next_tenth.saturating_mul(self.total) {
            return;
        }
        // Progress is best effort: a closed stderr must not fail the seed.
        let _ = writeln!(
            self.out,
            "seed: {} {}% ({done}/{} users, {rows} rows)",
            self.phase,
            done.saturating_mul(100) / self.total,
            self.total
        );
        while self.next_tenth <= 10 && self.next_tenth.saturating_mul(self.total) <= done.saturating_mul(10) {
            self.next_tenth += 1;
        }
    }

    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_every_tenth() {
        let mut lines = Lines::new(Vec::new());
        lines.start("users", 25);
        for done in 1..=25 {
            lines.update(done, done);
        }
        let text = String::from_utf8(lines.into_inner()).expect("utf-8");
        assert_eq!(text.lines().count(), 10, "{text}");
        assert!(text.starts_with("seed: users 12% (3/25 users, 3 rows)\n"), "{text}");
        assert!(text.ends_with("seed: users 100% (25/25 users, 25 rows)\n"), "{text}");

        let mut lines = Lines::new(Vec::new());
        lines.start("attendance", 3);
        for done in 1..=3 {
            lines.update(done, done * 100);
        }
        let text = String::from_utf8(lines.into_inner()).expect("utf-8");
        assert_eq!(text.lines().count(), 3, "{text}");
    }
}
