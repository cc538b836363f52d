//! The backoff every watch of Custody's retries with.
//!
//! kube's default (client-go's: 0.8 s doubling to 30 s, reset after two quiet minutes) is kind
//! to a struggling apiserver but slow to notice its return: after a 10-second outage the delays
//! have grown past 10 s, and the relist that follows (`410 Expired`) adds another, so an agent's
//! broken revision applied during the outage waited up to a minute more before it was reverted.
//! Custody's watches are few (one per resource per replica), so a 5-second cap costs the
//! apiserver little and bounds how long a recovered control plane goes unwatched.

use std::time::Duration;

use backon::ExponentialBuilder;
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher::ExponentialBackoff;

/// The first retry's delay.
pub const FIRST: Duration = Duration::from_millis(500);
/// The longest delay between two attempts.
pub const MAX: Duration = Duration::from_secs(5);
/// Quiet time after which the delays start again from [`FIRST`].
pub const RESET_AFTER: Duration = Duration::from_secs(30);

/// A fresh backoff for one watch stream (`WatchStreamExt::backoff`).
pub fn watch_backoff() -> impl Backoff {
    ResetTimerBackoff::new(
        ExponentialBackoff::from(
            ExponentialBuilder::default()
                .with_min_delay(FIRST)
                .with_max_delay(MAX)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times(),
        ),
        RESET_AFTER,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_never_gives_up() {
        let delays: Vec<Duration> = watch_backoff().take(50).collect();
        assert_eq!(delays.len(), 50, "a watch retries for ever");
        // Jitter adds up to one more delay on top of the exponential value.
        assert!(delays.iter().all(|d| *d <= MAX * 2), "{delays:?}");
        assert!(delays[0] >= FIRST, "{delays:?}");
        assert!(delays[49] >= MAX, "{delays:?}");
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = watch_backoff();
        for _ in 0..10 {
            backoff.next();
        }
        backoff.reset();
        let first = backoff.next().unwrap();
        assert!(first < MAX, "{first:?}");
    }
}
