//! The progress bar on the terminal while a run goes (stderr; nothing when it is not a
//! terminal or `--no-progress` is given, so reports and logs stay clean).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Makes the bars of one run.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    /// A bar of `len` steps for one phase, ticking by itself so its clock keeps moving.
    pub fn bar(&self, phase: &str, len: u64) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template(
            "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos:>7}/{len:7} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(phase.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}
