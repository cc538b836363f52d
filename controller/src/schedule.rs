//! The work queue: which workloads to look at and when. A workload is named by its UID, sixteen
//! bytes, because the cache holds everything a look reads; the queue keeps no copy of any
//! object (kube-runtime's Controller keeps a store of every workload and names each by an
//! `ObjectRef` of owned strings, some 8 MiB at 10,000 Deployments).
//!
//! The guarantees are those a Controller gives: a workload asked for again while it waits is
//! looked at once; one asked for while it is being looked at is looked at again right after,
//! never twice at the same time; a look that answers [`Next::requeue`] is repeated then unless a
//! trigger comes first; at most `concurrency` looks run at once. On shutdown no new look starts
//! and the running ones finish.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};

use crate::cache::compact::Uid;

/// When to look at a workload again without being asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next(Option<Duration>);

impl Next {
    /// Look again after `after`, unless a change comes first.
    pub const fn requeue(after: Duration) -> Self {
        Self(Some(after))
    }

    /// Look again only when something changes.
    pub const fn await_change() -> Self {
        Self(None)
    }

    /// The delay, when there is one.
    pub const fn after(self) -> Option<Duration> {
        self.0
    }

    /// The sooner of two.
    #[must_use]
    pub fn sooner(self, other: Self) -> Self {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Self(Some(a.min(b))),
            (a, b) => Self(a.or(b)),
        }
    }
}

/// The queue's state: looks scheduled for later, workloads due and waiting for a free slot,
/// workloads being looked at, and those asked for again meanwhile.
#[derive(Default)]
struct Queue {
    later: DelayQueue<Uid>,
    scheduled: HashMap<Uid, (delay_queue::Key, Instant)>,
    due: VecDeque<Uid>,
    waiting: HashSet<Uid>,
    running: HashSet<Uid>,
    again: HashSet<Uid>,
}

impl Queue {
    /// Asks for a look now: it replaces a later one, joins the due ones once, or follows the
    /// running one.
    fn now(&mut self, uid: Uid) {
        if let Some((key, _)) = self.scheduled.remove(&uid) {
            self.later.remove(&key);
        }
        if self.running.contains(&uid) {
            self.again.insert(uid);
        } else if self.waiting.insert(uid) {
            self.due.push_back(uid);
        }
    }

    /// Asks for a look at `at`; an earlier request stands.
    fn at(&mut self, uid: Uid, at: Instant) {
        match self.scheduled.get_mut(&uid) {
            Some((_, when)) if *when <= at => {}
            Some((key, when)) => {
                self.later.reset_at(key, at);
                *when = at;
            }
            None => {
                let key = self.later.insert_at(uid, at);
                self.scheduled.insert(uid, (key, at));
            }
        }
    }

    /// The next workload to look at, marked running, if one is due.
    fn start(&mut self) -> Option<Uid> {
        let uid = self.due.pop_front()?;
        self.waiting.remove(&uid);
        self.running.insert(uid);
        Some(uid)
    }

    /// A look finished and answered `next`.
    fn finished(&mut self, uid: Uid, next: Next) {
        self.running.remove(&uid);
        if self.again.remove(&uid) {
            self.now(uid);
        } else if let Some(after) = next.after() {
            self.at(uid, Instant::now() + after);
        }
    }
}

/// Looks at the workloads `triggered` names, and again when a look asks, with at most
/// `concurrency` looks at once, until `shutdown` (then waits for the running looks).
pub async fn run<F, Fut>(
    mut triggered: impl Stream<Item = Uid> + Unpin,
    concurrency: usize,
    look: F,
    shutdown: CancellationToken,
) where
    F: Fn(Uid) -> Fut,
    Fut: Future<Output = Next>,
{
    let mut queue = Queue::default();
    let mut running = FuturesUnordered::new();
    let mut open = true;
    loop {
        while running.len() < concurrency.max(1) {
            let Some(uid) = queue.start() else { break };
            running.push(look(uid).map(move |next| (uid, next)));
        }
        // With no trigger left to come, the queue ends once nothing is running or scheduled.
        if !open && running.is_empty() && queue.later.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some((uid, next)) = running.next(), if !running.is_empty() => queue.finished(uid, next),
            trigger = triggered.next(), if open => match trigger {
                Some(uid) => queue.now(uid),
                None => open = false,
            },
            Some(expired) = queue.later.next(), if !queue.later.is_empty() => {
                let uid = expired.into_inner();
                queue.scheduled.remove(&uid);
                queue.now(uid);
            }
        }
    }
    while running.next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records every look (which workload, when) and how many ran at once at most.
    #[derive(Default)]
    struct Looks {
        seen: Mutex<Vec<(Uid, Duration)>>,
        now_running: Mutex<usize>,
        most_at_once: Mutex<usize>,
    }

    fn start(
        concurrency: usize,
        looks: Arc<Looks>,
        answer: impl Fn(Uid, usize) -> Next + Send + Sync + 'static,
        work: Duration,
    ) -> (
        futures::channel::mpsc::UnboundedSender<Uid>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let shutdown = CancellationToken::new();
        let begun = Instant::now();
        let answer = Arc::new(answer);
        let task = tokio::spawn(run(
            rx,
            concurrency,
            move |uid| {
                let (looks, answer) = (looks.clone(), answer.clone());
                async move {
                    let n = {
                        let mut seen = looks.seen.lock().unwrap();
                        seen.push((uid, begun.elapsed()));
                        seen.iter().filter(|(u, _)| *u == uid).count()
                    };
                    {
                        let mut running = looks.now_running.lock().unwrap();
                        *running += 1;
                        let mut most = looks.most_at_once.lock().unwrap();
                        *most = (*most).max(*running);
                    }
                    tokio::time::sleep(work).await;
                    *looks.now_running.lock().unwrap() -= 1;
                    answer(uid, n)
                }
            },
            shutdown.clone(),
        ));
        (tx, shutdown, task)
    }

    fn times(looks: &Looks, uid: Uid) -> Vec<u64> {
        let seen = looks.seen.lock().unwrap();
        seen.iter()
            .filter(|(u, _)| *u == uid)
            .map(|(_, at)| at.as_millis() as u64)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_workload_asked_for_while_it_waits_is_looked_at_once() {
        let looks = Arc::new(Looks::default());
        let (tx, shutdown, task) = start(1, looks.clone(), |_, _| Next::await_change(), ms(10));
        // 9 takes the only slot; the others wait behind it.
        for uid in [9, 1, 2, 1, 1, 2] {
            tx.unbounded_send(uid).unwrap();
        }
        tokio::time::sleep(ms(100)).await;
        assert_eq!(times(&looks, 1).len(), 1);
        assert_eq!(times(&looks, 2).len(), 1);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_workload_asked_for_while_it_is_looked_at_is_looked_at_again_after() {
        let looks = Arc::new(Looks::default());
        let (tx, shutdown, task) = start(4, looks.clone(), |_, _| Next::await_change(), ms(50));
        tx.unbounded_send(7).unwrap();
        tokio::time::sleep(ms(10)).await;
        tx.unbounded_send(7).unwrap();
        tx.unbounded_send(7).unwrap();
        tokio::time::sleep(ms(200)).await;
        assert_eq!(
            times(&looks, 7),
            [0, 50],
            "once more, right after, never at once"
        );
        assert_eq!(*looks.most_at_once.lock().unwrap(), 1);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_repeats_the_look_unless_a_trigger_comes_first() {
        let looks = Arc::new(Looks::default());
        let answer = |_, n| {
            if n < 3 {
                Next::requeue(ms(1000))
            } else {
                Next::await_change()
            }
        };
        let (tx, shutdown, task) = start(2, looks.clone(), answer, ms(0));
        tx.unbounded_send(1).unwrap();
        tx.unbounded_send(2).unwrap();
        tokio::time::sleep(ms(300)).await;
        // A trigger replaces the look scheduled for 1,000 ms.
        tx.unbounded_send(2).unwrap();
        tokio::time::sleep(ms(5000)).await;
        assert_eq!(times(&looks, 1), [0, 1000, 2000]);
        assert_eq!(times(&looks, 2), [0, 300, 1300]);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_concurrency_runs_at_once() {
        let looks = Arc::new(Looks::default());
        let (tx, shutdown, task) = start(3, looks.clone(), |_, _| Next::await_change(), ms(10));
        for uid in 0..20 {
            tx.unbounded_send(uid).unwrap();
        }
        tokio::time::sleep(ms(500)).await;
        assert_eq!(looks.seen.lock().unwrap().len(), 20);
        assert_eq!(*looks.most_at_once.lock().unwrap(), 3);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_starts_nothing_new_and_lets_running_looks_finish() {
        let looks = Arc::new(Looks::default());
        let (tx, shutdown, task) = start(1, looks.clone(), |_, _| Next::await_change(), ms(100));
        tx.unbounded_send(1).unwrap();
        tx.unbounded_send(2).unwrap();
        tokio::time::sleep(ms(10)).await;
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(looks.seen.lock().unwrap().len(), 1);
        assert_eq!(
            *looks.now_running.lock().unwrap(),
            0,
            "the running look finished"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn scheduled_looks_still_run_after_the_triggers_close() {
        let looks = Arc::new(Looks::default());
        let answer = |_, n| {
            if n < 2 {
                Next::requeue(ms(500))
            } else {
                Next::await_change()
            }
        };
        let (tx, _shutdown, task) = start(1, looks.clone(), answer, ms(0));
        tx.unbounded_send(1).unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(
            times(&looks, 1),
            [0, 500],
            "then nothing is left and it ends"
        );
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
}
