//! Writing JSON to stdout one line at a time, flushed per line, so that a script
//! reading the bot's output live sees each event as it happens.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Map, Value};

pub struct JsonLines<W: Write> {
    out: W,
}

impl JsonLines<io::Stdout> {
    pub fn stdout() -> Self {
        Self { out: io::stdout() }
    }
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Writes `value` as one line and flushes it.
    pub fn emit<T: Serialize + ?Sized>(&mut self, value: &T) -> io::Result<()> {
        // Serializing to a writer only fails on I/O (our values are plain data).
        serde_json::to_writer(&mut self.out, value).map_err(io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    /// Writes an object that has an `event` field, with that field first so a person
    /// scanning the output sees what each line is (the rest follows in key order), and
    /// an `at` field (Unix milliseconds) saying when it happened.
    pub fn emit_event(&mut self, mut line: Value) -> io::Result<()> {
        if let Some(map) = line.as_object_mut() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
            map.entry("at").or_insert(Value::from(now as u64));
        }
        #[derive(Serialize)]
        struct EventFirst<'a> {
            event: Value,
            #[serde(flatten)]
            rest: &'a Map<String, Value>,
        }
        match line.as_object_mut() {
            Some(map) => {
                let event = map.remove("event").unwrap_or(Value::Null);
                self.emit(&EventFirst { event, rest: map })
            }
            None => self.emit(&line),
        }
    }

    /// Writes `text` as one plain line and flushes it.
    pub fn line(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_line() {
        let mut lines = JsonLines::new(Vec::new());
        lines.emit(&serde_json::json!({"event": "a"})).unwrap();
        lines.emit(&serde_json::json!({"event": "b", "n": 1})).unwrap();
        lines.emit_event(serde_json::json!({"a": 1, "event": "c", "z": 2, "at": 5})).unwrap();
        lines.emit_event(serde_json::json!({"event": "d"})).unwrap();
        let text = String::from_utf8(lines.into_inner()).unwrap();
        let mut rows = text.lines();
        assert_eq!(rows.next(), Some("{\"event\":\"a\"}"));
        assert_eq!(rows.next(), Some("{\"event\":\"b\",\"n\":1}"));
        assert_eq!(rows.next(), Some("{\"event\":\"c\",\"a\":1,\"at\":5,\"z\":2}"));
        let last: Value = serde_json::from_str(rows.next().unwrap()).unwrap();
        assert!(last["at"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "stamped with the time: {last}");
        assert_eq!(rows.next(), None);
    }
}
