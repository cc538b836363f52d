//! The leader's notification loop. RollbackRecords are owed a notice per target (and, for
//! Alertmanager and PagerDuty, its resolution), which the loop works out from the record, its
//! `status.notifications`, the cache and the clock ([`crate::decide::oncall::record`]); sends
//! run on their own tasks and their outcomes are written back into the record's status, so a
//! restart or a new leader sends nothing twice. Probations ride on their newest record. Other
//! notices (break-glass, change requests, unreadable attestations, inconclusive analyses) are
//! sent once through [`Oncall::once`]; those a target's open circuit held back wait for it.
//!
//! Nothing here blocks a revert: [`Oncall`] only queues, and the loop never waits on a send.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_crds::{RollbackRecord, TargetDelivery};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::decide::oncall::Notice;
use crate::decide::oncall::probation;
use crate::decide::route::{self, Destination};

use super::delivered::{legacy, sent_of, write_statuses};
use super::memory::{Job, Memory, RecordKey, Step, key_of};
use super::owed::{Owing, destinations_of, open_situations};
use super::{Notifier, NotifyError};

pub use super::memory::Inputs;

/// How often the loop looks for what is owed without being told.
pub const TICK: Duration = Duration::from_secs(5);
/// How long a one-off notice waits for a target's circuit to close.
const HOLD_FOR: Duration = Duration::from_secs(3600);
/// One-off notices held at most; past it the oldest go (and are logged).
const HOLD_MAX: usize = 1000;

/// Queues notices for the loop.
#[derive(Clone)]
pub struct Oncall {
    tx: mpsc::Sender<Message>,
    /// Situations already sent by [`Oncall::once_per_situation`], oldest first.
    seen: Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
}

/// Situations [`Oncall::once_per_situation`] remembers.
const SEEN_MAX: usize = 10_000;

/// What the loop is told.
pub enum Message {
    /// A record just written: notify it now rather than at the next tick.
    Record(Arc<RollbackRecord>),
    /// A one-off notice and its destinations.
    Once(Box<Notice>, Vec<Destination>),
}

impl Oncall {
    /// A queue and the receiver [`run`] takes.
    pub fn channel() -> (Self, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(1024);
        (
            Self {
                tx,
                seen: Arc::default(),
            },
            rx,
        )
    }

    /// A record was written. If the queue is full the next tick finds it in the store.
    pub fn record(&self, record: RollbackRecord) {
        let _ = self.tx.try_send(Message::Record(Arc::new(record)));
    }

    /// Like [`Oncall::once`], unless this process already sent a notice of the same
    /// situation: for moments a reconcile may see again.
    pub fn once_per_situation(&self, notice: Notice, destinations: &[Destination]) {
        {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.contains(&notice.situation) {
                return;
            }
            if seen.len() >= SEEN_MAX {
                seen.pop_front();
            }
            seen.push_back(notice.situation.clone());
        }
        self.once(notice, destinations);
    }

    /// Sends `notice` once to each of `destinations` that receives its kind.
    pub fn once(&self, notice: Notice, destinations: &[Destination]) {
        let destinations = route::receiving(destinations, notice.kind);
        if destinations.is_empty() {
            return;
        }
        if self
            .tx
            .try_send(Message::Once(Box::new(notice), destinations))
            .is_err()
        {
            tracing::warn!("the notification queue is full; a notice was dropped");
        }
    }
}

/// A finished send.
struct Done {
    job: Job,
    result: Result<(), NotifyError>,
    at: Timestamp,
}

/// Runs the loop until `shutdown`; it acts only while this replica leads.
pub async fn run(
    inputs: Inputs,
    mut messages: mpsc::Receiver<Message>,
    shutdown: CancellationToken,
) {
    let mut memory = Memory::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(message) = messages.recv() => match message {
                Message::Record(r) => {
                    memory.fresh.insert(key_of(&r), (r, Instant::now()));
                }
                Message::Once(notice, destinations) => {
                    for destination in destinations {
                        let job = Job { record: None, destination, notice: (*notice).clone(), step: Step::Once, since: Instant::now() };
                        spawn(&inputs.notifier, &mut memory, job, &done_tx);
                    }
                    continue;
                }
            },
            Some(done) = done_rx.recv() => {
                settle(&mut memory, done);
                while let Ok(done) = done_rx.try_recv() {
                    settle(&mut memory, done);
                }
                write_statuses(&inputs, &mut memory).await;
                continue;
            }
            _ = tick.tick() => {}
        }
        if *inputs.leader.borrow() {
            scan(&inputs, &mut memory, &done_tx);
            write_statuses(&inputs, &mut memory).await;
        }
    }
}

fn spawn(notifier: &Notifier, memory: &mut Memory, job: Job, done: &mpsc::UnboundedSender<Done>) {
    if !memory.in_flight.insert(job.key()) {
        return;
    }
    let (notifier, done) = (notifier.clone(), done.clone());
    tokio::spawn(async move {
        let result = notifier.deliver(&job.destination, &job.notice).await;
        let _ = done.send(Done {
            job,
            result,
            at: Timestamp::now(),
        });
    });
}

/// Takes in a finished send: what a record's target now has, or a held notice.
fn settle(memory: &mut Memory, done: Done) {
    let Done { job, result, at } = done;
    memory.in_flight.remove(&job.key());
    let label = job.destination.label();
    match &result {
        Ok(()) => {
            tracing::debug!(target_label = %label, kind = %job.notice.kind, step = ?job.step, "notified")
        }
        Err(error) => {
            tracing::warn!(target_label = %label, kind = %job.notice.kind, step = ?job.step, %error, "notification failed")
        }
    }
    let Some(record) = job.record.clone() else {
        if matches!(result, Err(NotifyError::CircuitOpen)) {
            hold(memory, job);
        }
        return;
    };
    let id = job.destination.id();
    if job.step == Step::Refresh {
        if result.is_ok() {
            memory
                .refreshed
                .insert((record, id, job.notice.kind), Instant::now());
        }
        return;
    }
    let entries = memory.overlay.entry(record.clone()).or_default();
    let entry = entries
        .entry((id.clone(), job.notice.kind))
        .or_insert_with(|| TargetDelivery {
            target: id.clone(),
            kind: job.notice.kind,
            format: job.destination.target.format,
            sent_at: None,
            resolved_at: None,
            error: None,
        });
    match (&result, job.step) {
        (Ok(()), Step::Trigger) => {
            entry.sent_at = Some(Time(at));
            memory
                .refreshed
                .insert((record.clone(), id, job.notice.kind), Instant::now());
        }
        (Ok(()), _) => entry.resolved_at = Some(Time(at)),
        (Err(_), _) => {}
    }
    entry.error = result.err().map(|e| format!("{label}: {e}"));
    memory.dirty.insert(record);
}

fn hold(memory: &mut Memory, job: Job) {
    if job.since.elapsed() >= HOLD_FOR {
        tracing::warn!(kind = %job.notice.kind, target_label = %job.destination.label(), "a notice waited an hour for its target's circuit to close; dropped");
        return;
    }
    if memory.held.len() >= HOLD_MAX {
        let dropped = memory.held.remove(0);
        tracing::warn!(kind = %dropped.notice.kind, target_label = %dropped.destination.label(), "too many notices wait for open circuits; the oldest was dropped");
    }
    memory.held.push(job);
}

/// What each record's targets are owed now, and the held one-off notices: sends them.
fn scan(inputs: &Inputs, memory: &mut Memory, done: &mpsc::UnboundedSender<Done>) {
    let now = Timestamp::now();
    let records = current_records(inputs, memory);
    let policies = inputs.policies.state();
    let probations = probation::on_probation(&records, &policies, now);
    let open = open_situations(inputs, &records, now);
    let mut jobs = Vec::new();
    for record in &records {
        let key = key_of(record);
        let sent = sent_of(record, memory.overlay.get(&key));
        let destinations = destinations_of(inputs, record);
        if destinations.is_empty() {
            continue;
        }
        let owed = Owing {
            key: &key,
            sent: &sent,
            destinations: &destinations,
            now,
        };
        if !legacy(record, &sent) {
            jobs.extend(owed.record(inputs, record, &open, memory));
        }
        jobs.extend(owed.probation(record, &probations, &policies, memory));
    }
    // A target whose circuit is open is not even tried until its wait is over: what it is owed
    // stays owed (records) or held (one-off notices).
    for job in jobs {
        if !inputs.notifier.waiting(&job.destination) {
            spawn(&inputs.notifier, memory, job, done);
        }
    }
    let (waiting, due): (Vec<Job>, Vec<Job>) = std::mem::take(&mut memory.held)
        .into_iter()
        .partition(|job| inputs.notifier.waiting(&job.destination));
    memory.held = waiting;
    for job in due {
        spawn(&inputs.notifier, memory, job, done);
    }
}

/// The store's records, and those told about that it does not show yet.
fn current_records(inputs: &Inputs, memory: &mut Memory) -> Vec<Arc<RollbackRecord>> {
    let mut records = inputs.records.state();
    let known: HashSet<RecordKey> = records.iter().map(|r| key_of(r)).collect();
    memory
        .fresh
        .retain(|key, (_, at)| !known.contains(key) && at.elapsed() < Duration::from_secs(300));
    records.extend(memory.fresh.values().map(|(r, _)| r.clone()));
    let live: HashSet<RecordKey> = records.iter().map(|r| key_of(r)).collect();
    memory.overlay.retain(|key, _| live.contains(key));
    memory.refreshed.retain(|(key, _, _), _| live.contains(key));
    records
}
