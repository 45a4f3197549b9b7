//! The time the application believes it is. Scheduled work asks this clock, never the system
//! directly, so tests can run a job "on Monday at 07:00" without waiting for it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
pub struct Clock {
    mode: Arc<Mutex<Mode>>,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    System,
    /// Starts at `start` when the process saw `origin`, then runs at real speed.
    Shifted {
        start: DateTime<Utc>,
        origin: DateTime<Utc>,
    },
    Fixed(DateTime<Utc>),
}

impl Clock {
    pub fn system() -> Clock {
        Clock {
            mode: Arc::new(Mutex::new(Mode::System)),
        }
    }

    /// A clock that reads `start` now and then advances with real time (the daemon's `--clock`).
    pub fn starting_at(start: DateTime<Utc>) -> Clock {
        Clock {
            mode: Arc::new(Mutex::new(Mode::Shifted {
                start,
                origin: Utc::now(),
            })),
        }
    }

    /// A clock that stands still until moved (unit and integration tests).
    pub fn fixed(at: DateTime<Utc>) -> Clock {
        Clock {
            mode: Arc::new(Mutex::new(Mode::Fixed(at))),
        }
    }

    /// Moves a fixed clock; every copy of this clock sees the new time.
    pub fn set(&self, at: DateTime<Utc>) {
        if let Ok(mut mode) = self.mode.lock() {
            *mode = Mode::Fixed(at);
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let mode = self.mode.lock().map(|m| *m).unwrap_or(Mode::System);
        match mode {
            Mode::System => Utc::now(),
            Mode::Shifted { start, origin } => start + (Utc::now() - origin),
            Mode::Fixed(at) => at,
        }
    }

    /// Seconds since the epoch, the unit the store keeps times in.
    pub fn now_ts(&self) -> i64 {
        self.now().timestamp()
    }
}

/// Turns stored epoch seconds back into a UTC time.
pub fn from_ts(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_moves_only_when_set_and_copies_follow() {
        let t0 = DateTime::parse_from_rfc3339("2026-02-09T07:00:00Z")
            .unwrap()
            .to_utc();
        let clock = Clock::fixed(t0);
        let copy = clock.clone();
        assert_eq!(copy.now(), t0);
        clock.set(t0 + chrono::Duration::hours(1));
        assert_eq!(copy.now_ts(), t0.timestamp() + 3600);
    }

    #[test]
    fn a_started_clock_begins_at_its_start() {
        let t0 = DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let clock = Clock::starting_at(t0);
        let elapsed = clock.now() - t0;
        assert!(elapsed >= chrono::Duration::zero() && elapsed < chrono::Duration::seconds(5));
    }
}
