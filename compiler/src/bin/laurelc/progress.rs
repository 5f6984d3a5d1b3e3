//! Progress bars on stderr, for the libraries' [`laurel_runtime::Progress`]
//! reports: drawn only when stderr is a terminal and `--quiet` is not given,
//! so piped output, CI logs and `--json` stay clean.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar, or nothing.
pub struct Bar {
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar that draws when stderr is a terminal, unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self {
            enabled: !quiet && std::io::stderr().is_terminal(),
            bar: None,
        }
    }
}

impl laurel_runtime::Progress for Bar {
    fn start(&mut self, what: &str, total: u64) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>24} [{bar:32}] {pos}/{len} ({elapsed})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        self.bar = Some(bar);
    }

    fn set(&mut self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    /// A bar left by an error is cleared before the error is printed.
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
