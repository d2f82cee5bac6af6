//! The kernel log: `log` records on COM1, stamped with time since entry.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let us = crate::time::micros_since_entry();
        let lvl = match r.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        crate::println!("[{:4}.{:06}] {} {}", us / 1_000_000, us % 1_000_000, lvl, r.args());
    }

    fn flush(&self) {}
}

/// Installs the logger with the level named by the `log=` option (default `info`).
pub fn init(level: Option<&str>) {
    let filter = match level {
        Some("error") => LevelFilter::Error,
        Some("warn") => LevelFilter::Warn,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        Some("off") => LevelFilter::Off,
        _ => LevelFilter::Info,
    };
    // A second call is harmless: the logger is already this one.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(filter);
}
