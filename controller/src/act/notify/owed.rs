//! What each RollbackRecord's targets are owed now: its notice, its resolution once the
//! situation resolves (never while a newer notice of the same situation is open), a firing
//! alert's refresh, and the probation it keeps. Decided from the record, what it says was sent,
//! the cache, the stores and the clock; the pure rules are [`crate::decide::oncall::record`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_crds::{CustodyPolicy, NoticeKind, RollbackRecord, RollbackSettings, TargetDelivery};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::ObjectRef;

use crate::cache::compact;
use crate::decide::oncall::Notice;
use crate::decide::oncall::probation::{self, OnProbation};
use crate::decide::oncall::record::{self, Owed};
use crate::decide::owning_team;
use crate::decide::route::{self, Destination, PolicyTargets};

use super::memory::{Inputs, Job, Memory, RecordKey, Step, key_of};

/// How often a firing Alertmanager alert is sent again (its `endsAt` is four of these ahead).
pub const REFRESH: Duration = Duration::from_secs(60);
/// A record older than this that no target has been sent is not notified: an upgrade, or a
/// controller down for a day, does not page about history.
pub const MAX_AGE: SignedDuration = SignedDuration::from_hours(24);

/// The record's targets: its team's (a registered team that covers the namespace), or else
/// its policy's.
pub(super) fn destinations_of(inputs: &Inputs, record: &RollbackRecord) -> Vec<Destination> {
    let namespace = record.metadata.namespace.as_deref().unwrap_or_default();
    let team = record
        .spec
        .team
        .as_deref()
        .and_then(|name| inputs.teams.get(&ObjectRef::new(name)))
        .filter(|team| owning_team::covers(team, namespace));
    let policy = inputs.policies.get(&ObjectRef::new(&record.spec.policy));
    route::destinations(
        team.as_deref(),
        policy.as_deref().map(|p| PolicyTargets {
            name: &record.spec.policy,
            settings: &p.spec.rollback,
        }),
    )
}

/// Each open record situation's newest record, by situation: an older record's resolution is
/// not sent while a newer one of the same situation is open.
pub(super) fn open_situations(
    inputs: &Inputs,
    records: &[Arc<RollbackRecord>],
    now: Timestamp,
) -> HashMap<String, Timestamp> {
    let mut out: HashMap<String, Timestamp> = HashMap::new();
    for record in records {
        if resolution(inputs, record, now).is_some() {
            continue;
        }
        let situation = situation_of(record);
        let at = record.spec.acted_at.0;
        let newest = out.entry(situation).or_insert(at);
        *newest = (*newest).max(at);
    }
    out
}

fn situation_of(record: &RollbackRecord) -> String {
    let workload = &record.spec.workload;
    crate::decide::oncall::situation(
        record.metadata.namespace.as_deref().unwrap_or_default(),
        &format!("{}/{}", workload.kind.as_str(), workload.name),
        record::kind(record),
    )
}

/// When the record's situation resolved, from the cache; never while the cache is syncing.
fn resolution(inputs: &Inputs, record: &RollbackRecord, now: Timestamp) -> Option<Timestamp> {
    if !inputs.cache.is_synced() {
        return None;
    }
    let uid = record.spec.workload.uid.as_deref()?;
    let workload = inputs.cache.revisions_of(compact::uid(uid));
    let workload = workload.as_ref().map(|(w, r)| (w, r.as_slice()));
    let healthy_after = inputs
        .policies
        .get(&ObjectRef::new(&record.spec.policy))
        .map_or_else(
            || RollbackSettings::default().healthy_after_seconds,
            |p| p.spec.rollback.healthy_after_seconds,
        );
    let window = SignedDuration::from_secs(i64::from(healthy_after));
    record::resolved_at(record, workload, window, &inputs.vocabulary, now)
}

/// What one record's targets are owed.
pub(super) struct Owing<'a> {
    pub(super) key: &'a RecordKey,
    pub(super) sent: &'a [TargetDelivery],
    pub(super) destinations: &'a [Destination],
    pub(super) now: Timestamp,
}

impl Owing<'_> {
    /// The record's own notice: its trigger, its resolution, or a firing alert's refresh.
    pub(super) fn record(
        &self,
        inputs: &Inputs,
        record: &RollbackRecord,
        open: &HashMap<String, Timestamp>,
        memory: &mut Memory,
    ) -> Vec<Job> {
        let kind = record::kind(record);
        let resolved = resolution(inputs, record, self.now);
        let newer_open = open
            .get(&situation_of(record))
            .is_some_and(|newest| *newest > record.spec.acted_at.0);
        let too_old = self.now.duration_since(record.spec.acted_at.0) > MAX_AGE;
        // Built only when something is sent: it holds the whole record as JSON.
        let mut notice: Option<Notice> = None;
        let mut notice = || notice.get_or_insert_with(|| record::notice(record)).clone();
        let mut jobs = Vec::new();
        for destination in route::receiving(self.destinations, kind) {
            let format = destination.target.format;
            let id = destination.id();
            match record::owed(
                self.sent,
                &id,
                kind,
                format.resolves(),
                resolved,
                newer_open,
            ) {
                Owed::Trigger if too_old => {}
                Owed::Trigger => jobs.push(self.job(destination, notice(), Step::Trigger)),
                Owed::Resolve => {
                    let at = resolved.unwrap_or(self.now);
                    jobs.push(self.job(destination, notice().resolved(at), Step::Resolve));
                }
                Owed::Supersede => supersede(memory, self.key, self.sent, &id, kind, self.now),
                Owed::Nothing => {
                    if resolved.is_none() && self.refresh_due(memory, &destination, kind) {
                        jobs.push(self.job(destination, notice(), Step::Refresh));
                    }
                }
            }
        }
        jobs
    }

    /// The probation this record keeps, if it is the newest of one; or the resolution of one it
    /// announced that is over.
    pub(super) fn probation(
        &self,
        record: &RollbackRecord,
        probations: &BTreeMap<(String, String), OnProbation>,
        policies: &[Arc<CustodyPolicy>],
        memory: &Memory,
    ) -> Vec<Job> {
        let kind = NoticeKind::Probation;
        let mut jobs = Vec::new();
        let current = probations.values().find(|p| &p.newest == self.key);
        if let Some(p) = current {
            let notice = probation::notice(p, record);
            for destination in route::receiving(self.destinations, kind) {
                let id = destination.id();
                match record::owed(
                    self.sent,
                    &id,
                    kind,
                    destination.target.format.resolves(),
                    None,
                    false,
                ) {
                    Owed::Trigger => {
                        jobs.push(self.job(destination, notice.clone(), Step::Trigger))
                    }
                    _ if self.refresh_due(memory, &destination, kind) => {
                        jobs.push(self.job(destination, notice.clone(), Step::Refresh));
                    }
                    _ => {}
                }
            }
            return jobs;
        }
        let Some(agent) = record.spec.from.agent.as_deref() else {
            return jobs;
        };
        let scope = policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(record.spec.policy.as_str()))
            .and_then(|p| p.spec.agents.probation.as_ref())
            .map(|p| p.scope)
            .unwrap_or_default();
        let place = probation::place_of(record, scope).unwrap_or_default();
        if probations.contains_key(&(agent.to_string(), place.clone())) {
            // Still on probation: a newer record keeps it.
            return jobs;
        }
        for destination in route::receiving(self.destinations, kind) {
            let id = destination.id();
            if record::owed(
                self.sent,
                &id,
                kind,
                destination.target.format.resolves(),
                Some(self.now),
                false,
            ) == Owed::Resolve
            {
                let notice = ended_probation(record, agent, &place, self.now);
                jobs.push(self.job(destination, notice, Step::Resolve));
            }
        }
        jobs
    }

    fn job(&self, destination: Destination, notice: Notice, step: Step) -> Job {
        Job {
            record: Some(self.key.clone()),
            destination,
            notice,
            step,
            since: Instant::now(),
        }
    }

    /// Whether a firing Alertmanager alert is due to be sent again.
    fn refresh_due(&self, memory: &Memory, destination: &Destination, kind: NoticeKind) -> bool {
        // Only Alertmanager forgets an alert that is not sent again; PagerDuty keeps it open.
        if destination.target.format != custody_crds::NotifyFormat::Alertmanager {
            return false;
        }
        let sent = self.sent.iter().any(|d| {
            d.target == destination.id()
                && d.kind == kind
                && d.sent_at.is_some()
                && d.resolved_at.is_none()
        });
        sent && memory
            .refreshed
            .get(&(self.key.clone(), destination.id(), kind))
            .is_none_or(|at| at.elapsed() >= REFRESH)
    }
}

/// The resolution of a probation that is over, rebuilt from the record that announced it.
fn ended_probation(record: &RollbackRecord, agent: &str, place: &str, now: Timestamp) -> Notice {
    let p = OnProbation {
        agent: agent.to_string(),
        place: place.to_string(),
        policy: record.spec.policy.clone(),
        newest: key_of(record),
        records: vec![key_of(record).1],
        ends: now,
    };
    probation::notice(&p, record).resolved(now)
}

/// Writes `id`'s resolution of `kind` as done without sending it: the entry the record shows as
/// sent, resolved at `now`.
fn supersede(
    memory: &mut Memory,
    key: &RecordKey,
    sent: &[TargetDelivery],
    id: &str,
    kind: NoticeKind,
    now: Timestamp,
) {
    let Some(entry) = sent.iter().find(|d| d.target == id && d.kind == kind) else {
        return;
    };
    let resolved = TargetDelivery {
        resolved_at: Some(Time(now)),
        ..entry.clone()
    };
    memory
        .overlay
        .entry(key.clone())
        .or_default()
        .insert((id.to_string(), kind), resolved);
    memory.dirty.insert(key.clone());
}
