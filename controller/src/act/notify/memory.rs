//! What the notification loop reads ([`Inputs`]), the sends it starts ([`Job`]) and what it
//! remembers between them ([`Memory`]): the types [`super::dispatch`], [`super::owed`] and
//! [`super::delivered`] share.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use custody_crds::{
    CustodyPolicy, CustodyTeam, NoticeKind, RollbackRecord, TargetDelivery, Vocabulary,
};
use kube::Client;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use crate::cache::index::Cache;
use crate::decide::oncall::Notice;
use crate::decide::route::Destination;

use super::Notifier;

/// A record, by namespace and name.
pub(super) type RecordKey = (String, String);

/// What the loop reads.
pub struct Inputs {
    /// The API client, for records' status.
    pub client: Client,
    /// Sends.
    pub notifier: Notifier,
    /// RollbackRecords.
    pub records: Store<RollbackRecord>,
    /// CustodyTeams.
    pub teams: Store<CustodyTeam>,
    /// CustodyPolicies.
    pub policies: Store<CustodyPolicy>,
    /// Workloads and revisions, for when a record's situation resolves.
    pub cache: Arc<Cache>,
    /// The annotation keys.
    pub vocabulary: Vocabulary,
    /// Whether this replica leads.
    pub leader: watch::Receiver<bool>,
}

/// What one send is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Step {
    Trigger,
    Resolve,
    Refresh,
    Once,
}

/// One send in flight, and what it is about.
pub(super) struct Job {
    pub(super) record: Option<RecordKey>,
    pub(super) destination: Destination,
    pub(super) notice: Notice,
    pub(super) step: Step,
    /// When it was first tried: a held one-off notice waits at most an hour.
    pub(super) since: Instant,
}

impl Job {
    pub(super) fn key(&self) -> (Option<RecordKey>, String, NoticeKind, Step) {
        (
            self.record.clone(),
            self.destination.id(),
            self.notice.kind,
            self.step,
        )
    }
}

/// The loop's memory: what it sent that the store may not show yet, what is in flight, and
/// when firing alerts were last sent.
#[derive(Default)]
pub(super) struct Memory {
    /// Deliveries written (or to be written) into records, newer than the store's.
    pub(super) overlay: HashMap<RecordKey, BTreeMap<(String, NoticeKind), TargetDelivery>>,
    /// Records told about but maybe not in the store yet.
    pub(super) fresh: HashMap<RecordKey, (Arc<RollbackRecord>, Instant)>,
    pub(super) in_flight: HashSet<(Option<RecordKey>, String, NoticeKind, Step)>,
    pub(super) refreshed: HashMap<(RecordKey, String, NoticeKind), Instant>,
    /// One-off notices a target's open circuit held back.
    pub(super) held: Vec<Job>,
    /// Records whose status is to be written.
    pub(super) dirty: HashSet<RecordKey>,
}

/// A record's key.
pub(super) fn key_of(record: &RollbackRecord) -> RecordKey {
    (
        record.metadata.namespace.clone().unwrap_or_default(),
        record.metadata.name.clone().unwrap_or_default(),
    )
}
