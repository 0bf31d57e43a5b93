//! A progress bar on stderr for long inputs.

use super::lines::Chunk;
use super::summary::Summary;
use super::CHUNK_LINES;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar on stderr, shown only on a terminal and once the input is more than a chunk.
pub(super) struct Progress {
    enabled: bool,
    size: Option<u64>,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(super) fn new(size: Option<u64>) -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            size,
            bar: None,
        }
    }

    pub(super) fn update(&mut self, chunk: &Chunk, summary: &Summary) {
        if self.bar.is_none() && self.enabled && chunk.last_line > CHUNK_LINES as u64 {
            self.bar = Some(self.make_bar());
        }
        let Some(bar) = &self.bar else { return };
        match self.size {
            Some(_) => bar.set_position(chunk.bytes),
            None => bar.set_position(chunk.last_line),
        }
        bar.set_message(summary.progress_message());
    }

    fn make_bar(&self) -> ProgressBar {
        let (bar, template) = match self.size {
            Some(size) => (ProgressBar::new(size), "{bar:30} {percent:>3}% {msg}"),
            None => (ProgressBar::new_spinner(), "{spinner} line {pos} {msg}"),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
