//! A small line logger for the shim: one `tracing` event per line to
//! containerd's log FIFO. It keeps no span registry, which matters in a
//! process that lives once per pod: tracing-subscriber's fmt stack kept
//! ~32 KiB of heap resident in every shim.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

pub struct LineLogger {
    max: Level,
    out: Mutex<Box<dyn Write + Send>>,
}

impl LineLogger {
    pub fn new(max: Level, out: Box<dyn Write + Send>) -> Self {
        LineLogger {
            max,
            out: Mutex::new(out),
        }
    }
}

/// Writes `message` first, then `key=value` pairs.
struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// Formats one event as a line: `<unix time> <LEVEL> <target>: <message> k=v…`.
pub fn format_event(event: &Event<'_>, at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let meta = event.metadata();
    let mut line = Line(format!(
        "{}.{:06} {} {}:",
        d.as_secs(),
        d.subsec_micros(),
        meta.level(),
        meta.target()
    ));
    event.record(&mut line);
    line.0.push('\n');
    line.0
}

impl Subscriber for LineLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let line = format_event(event, SystemTime::now());
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = out.write_all(line.as_bytes());
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_carry_level_message_and_fields() {
        let buf = Buf::default();
        let logger = LineLogger::new(Level::INFO, Box::new(buf.clone()));
        tracing::subscriber::with_default(logger, || {
            tracing::info!(rpc = "CreateSandbox", id = "p1", us = 42u64, "failed");
            tracing::debug!("filtered out");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(" INFO "), "{text}");
        assert!(
            text.contains(" failed rpc=\"CreateSandbox\" id=\"p1\" us=42"),
            "{text}"
        );
    }
}
