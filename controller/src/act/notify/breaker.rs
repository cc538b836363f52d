//! A circuit breaker per notification target: after [`TRIP_AFTER`] failed deliveries in a row
//! (each one already retried with backoff) the target is left alone for [`OPEN_FOR`], then
//! tried with one delivery; its success closes the circuit, its failure opens it again. A dead
//! endpoint then costs one attempt a minute instead of a retry storm per notice, and what it
//! was owed waits (records keep it in their status) rather than being dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failed deliveries in a row that open a target's circuit.
pub const TRIP_AFTER: u32 = 5;

/// How long an open circuit stays open before one delivery is tried.
pub const OPEN_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// Every target's circuit, by target id.
#[derive(Debug, Default)]
pub struct Breakers {
    circuits: HashMap<String, Circuit>,
}

impl Breakers {
    /// Whether a delivery to `target` may be tried at `now`. Past an open circuit's wait, one
    /// delivery is let through until its outcome is known.
    pub fn admit(&mut self, target: &str, now: Instant) -> bool {
        let Some(circuit) = self.circuits.get_mut(target) else {
            return true;
        };
        match circuit.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) if circuit.probing => false,
            Some(_) => {
                circuit.probing = true;
                true
            }
        }
    }

    /// Records a delivery's outcome; returns whether the circuit is open afterwards.
    pub fn record(&mut self, target: &str, ok: bool, now: Instant) -> bool {
        if ok {
            self.circuits.remove(target);
            return false;
        }
        let circuit = self.circuits.entry(target.to_string()).or_default();
        circuit.failures += 1;
        if circuit.probing || circuit.failures >= TRIP_AFTER {
            circuit.open_until = Some(now + OPEN_FOR);
            circuit.probing = false;
        }
        circuit.open_until.is_some()
    }

    /// Whether `target`'s circuit is open and still waiting at `now`: a delivery would not be
    /// tried, so there is no point starting one.
    pub fn waiting(&self, target: &str, now: Instant) -> bool {
        self.circuits
            .get(target)
            .and_then(|c| c.open_until)
            .is_some_and(|until| now < until)
    }

    /// Whether `target`'s circuit is open (or probing).
    pub fn is_open(&self, target: &str) -> bool {
        self.circuits
            .get(target)
            .is_some_and(|c| c.open_until.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_circuit_opens_after_repeated_failures_and_probes_once() {
        let mut b = Breakers::default();
        let t0 = Instant::now();
        for _ in 0..TRIP_AFTER - 1 {
            assert!(b.admit("a", t0));
            assert!(!b.record("a", false, t0));
        }
        assert!(b.admit("a", t0));
        assert!(b.record("a", false, t0), "the fifth failure opens it");
        assert!(!b.admit("a", t0 + OPEN_FOR / 2), "open: nothing tried");
        assert!(b.waiting("a", t0 + OPEN_FOR / 2));
        assert!(!b.waiting("a", t0 + OPEN_FOR), "its wait is over");
        assert!(b.admit("b", t0), "other targets are not affected");
        let later = t0 + OPEN_FOR;
        assert!(b.admit("a", later), "one delivery probes");
        assert!(!b.admit("a", later), "and only one");
        assert!(b.record("a", false, later), "a failed probe opens it again");
        assert!(!b.admit("a", later + OPEN_FOR / 2));
        let again = later + OPEN_FOR;
        assert!(b.admit("a", again));
        assert!(!b.record("a", true, again), "a successful probe closes it");
        assert!(!b.is_open("a"));
        assert!(b.admit("a", again));
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut b = Breakers::default();
        let t0 = Instant::now();
        for _ in 0..TRIP_AFTER - 1 {
            b.record("a", false, t0);
        }
        b.record("a", true, t0);
        for _ in 0..TRIP_AFTER - 1 {
            assert!(!b.record("a", false, t0));
        }
    }
}
