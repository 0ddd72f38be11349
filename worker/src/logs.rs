//! An attempt's output lines on their way to the store (in batches) and then the bus, capped
//! at a byte budget per attempt with one marker line when cut. Lines are published once
//! stored, with their store id, so a WebSocket client resuming from a line id misses none and
//! sees none twice; the price is up to one flush interval of latency.

use std::sync::Arc;
use std::time::Duration;

use codex32_shared::Timestamp;
use codex32_shared::bus::{Bus, Event};
use codex32_shared::domain::LogStream;
use codex32_shared::domain::service::LOG_TAIL_LINES;
use codex32_shared::store::{NewLogLine, Store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Lines written to the store in one statement at most; also the flush trigger.
const BATCH: usize = 256;
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Where an executor sends output lines. Cheap to clone; the writer ends when all clones drop.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<(LogStream, String)>,
}

impl LogSink {
    /// One line of raw output (without its newline); invalid UTF-8 is replaced.
    pub async fn line(&self, stream: LogStream, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let _ = self
            .tx
            .send((stream, text.trim_end_matches('\r').to_owned()))
            .await;
    }

    /// A note from codex32 itself, kept with the bot's lines.
    pub async fn system(&self, text: impl Into<String>) {
        let _ = self.tx.send((LogStream::System, text.into())).await;
    }
}

impl LogSink {
    /// A sink that keeps only the last `keep` lines, for output nobody stores (a probe's).
    pub fn capture(keep: usize) -> (LogSink, JoinHandle<Vec<String>>) {
        let (tx, mut rx) = mpsc::channel::<(LogStream, String)>(64);
        let collector = tokio::spawn(async move {
            let mut lines = std::collections::VecDeque::with_capacity(keep);
            while let Some((_, line)) = rx.recv().await {
                if lines.len() == keep {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
            lines.into_iter().collect()
        });
        (LogSink { tx }, collector)
    }
}

/// What replaces a secret's value in logs and output.
pub const REDACTED: &str = "[redacted]";

/// `line` with every secret value replaced.
pub fn redact_line(line: String, secrets: &[String]) -> String {
    if !secrets.iter().any(|s| line.contains(s.as_str())) {
        return line;
    }
    secrets
        .iter()
        .fold(line, |line, secret| line.replace(secret.as_str(), REDACTED))
}

/// `value` with every secret replaced in its strings (keys included).
pub fn redact_value(value: serde_json::Value, secrets: &[String]) -> serde_json::Value {
    use serde_json::Value;
    if secrets.is_empty() {
        return value;
    }
    match value {
        Value::String(s) => Value::String(redact_line(s, secrets)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| redact_value(v, secrets))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (redact_line(k, secrets), redact_value(v, secrets)))
                .collect(),
        ),
        other => other,
    }
}

/// What the writer learnt from the whole output.
#[derive(Debug, Default)]
pub struct LogSummary {
    /// The last non-empty stdout line, even past the cap: the fallback result.
    pub last_stdout: Option<String>,
    pub truncated: bool,
    /// The bot printed a line starting with [`NO_RETRY_MARKER`]: a retry cannot help.
    pub no_retry: bool,
    /// The last lines the program printed, even past the cap (a service's crash report).
    pub tail: std::collections::VecDeque<String>,
}

/// A line a bot prints (on stdout or stderr) to say its failure is not worth retrying.
pub const NO_RETRY_MARKER: &str = "::no-retry::";

/// Starts the writer of one attempt's log.
pub fn start(
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    execution_id: Uuid,
    attempt: i32,
    limit_bytes: usize,
    redact: Arc<[String]>,
) -> (LogSink, JoinHandle<LogSummary>) {
    let (tx, rx) = mpsc::channel(1024);
    let writer = Writer {
        store,
        bus,
        execution_id,
        attempt,
        limit_bytes,
        redact,
        used: 0,
        pending: Vec::new(),
        summary: LogSummary::default(),
    };
    (LogSink { tx }, tokio::spawn(writer.run(rx)))
}

struct Writer {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    execution_id: Uuid,
    attempt: i32,
    limit_bytes: usize,
    /// Secret values, replaced before a line is kept or published.
    redact: Arc<[String]>,
    used: usize,
    pending: Vec<NewLogLine>,
    summary: LogSummary,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<(LogStream, String)>) -> LogSummary {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                next = rx.recv() => match next {
                    Some((stream, line)) => {
                        self.accept(stream, line).await;
                        if self.pending.len() >= BATCH {
                            self.flush().await;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => self.flush().await,
            }
        }
        self.flush().await;
        self.summary
    }

    async fn accept(&mut self, stream: LogStream, line: String) {
        let line = redact_line(line, &self.redact);
        if stream != LogStream::System && line.starts_with(NO_RETRY_MARKER) {
            self.summary.no_retry = true;
        }
        if stream == LogStream::Stdout && !line.trim().is_empty() {
            self.summary.last_stdout = Some(line.clone());
        }
        if stream != LogStream::System {
            if self.summary.tail.len() == LOG_TAIL_LINES {
                self.summary.tail.pop_front();
            }
            self.summary.tail.push_back(line.clone());
        }
        if self.summary.truncated {
            return;
        }
        if self.used + line.len() > self.limit_bytes && stream != LogStream::System {
            self.summary.truncated = true;
            let note = format!(
                "[codex32] log limit of {} KiB reached; further output is not kept",
                self.limit_bytes / 1024
            );
            self.push(LogStream::System, note);
            return;
        }
        self.used += line.len();
        self.push(stream, line);
    }

    fn push(&mut self, stream: LogStream, line: String) {
        self.pending.push(NewLogLine {
            execution_id: self.execution_id,
            attempt: self.attempt,
            stream,
            line,
            at: Timestamp::now(),
        });
    }

    /// Writes pending lines, then publishes them with their ids; on a store error keeps them
    /// for the next try, within the budget (lines dropped from the budget are never published).
    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self.store.append_logs(&self.pending).await {
            Ok(ids) => {
                for (l, id) in self.pending.drain(..).zip(ids) {
                    let event = Event::ExecutionLog {
                        id: Some(id),
                        execution_id: l.execution_id,
                        attempt: l.attempt,
                        stream: l.stream,
                        line: l.line,
                    };
                    if let Err(e) = self.bus.publish(&event).await {
                        tracing::debug!(error = %e, "Log line not published on the bus.");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(execution_id = %self.execution_id, error = %e, "Cannot store log lines; will retry.");
                if self.pending.len() > 16 * BATCH {
                    self.pending.drain(..BATCH);
                }
            }
        }
    }
}
