//! Progress events drawn on the terminal: a bar per source run or backfill on a terminal, a
//! line every 5 % (and every failure) otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;

use affluent_core::progress::{IntervalProgress, Observer, Progress, RequestProgress};

/// Renders [`Progress`] on stderr.
#[derive(Debug)]
pub struct Bars {
    bar: Option<indicatif::ProgressBar>,
    /// Whether request progress is shown (a backfill shows only its intervals).
    requests: bool,
    last_line: Mutex<Option<usize>>,
}

impl Bars {
    /// Bars on stderr when it is a terminal; plain lines otherwise. `requests`: also show the
    /// requests of a source's run.
    pub fn new(requests: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} ({eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            requests,
            last_line: Mutex::new(None),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn requests(&self, p: &RequestProgress) {
        let Some(bar) = &self.bar else {
            // Without a terminal a source's requests are in its summary line.
            return;
        };
        if p.total <= 1 {
            return;
        }
        bar.set_prefix(p.source.clone());
        bar.set_length(p.total);
        bar.set_position(p.done);
        bar.set_message(format!(
            "requests, {} records, {} landed, {} unchanged",
            p.records, p.landed, p.unchanged
        ));
    }

    fn intervals(&self, p: &IntervalProgress) {
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(p.task.to_string());
                bar.set_length(p.total as u64);
                bar.set_position((p.done + p.failed) as u64);
                bar.set_message(if p.failed > 0 {
                    format!("intervals, {} failed", p.failed)
                } else {
                    "intervals".to_string()
                });
            }
            None => {
                let Some((i, r)) = &p.last else {
                    return;
                };
                let n = p.done + p.failed;
                let step = (p.total / 20).max(1);
                let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
                match r {
                    Err(e) => eprintln!("{} {n}/{} {i} failed: {e}", p.task, p.total),
                    Ok(()) if (n.is_multiple_of(step) || n == p.total) && *last != Some(n) => {
                        *last = Some(n);
                        eprintln!("{} {n}/{} intervals, up to {}", p.task, p.total, i.end)
                    }
                    Ok(()) => {}
                }
            }
        }
    }
}

impl Observer for Bars {
    fn observe(&self, event: &Progress) {
        match event {
            Progress::Requests(p) if self.requests => self.requests(p),
            Progress::Requests(_) => {}
            Progress::Intervals(p) => self.intervals(p),
        }
    }
}
