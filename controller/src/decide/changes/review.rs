//! What the controller writes on a change request, and what it announces: the phase, the
//! deadline and a sentence, from where the request stands; the notices and Events that are due,
//! each once, because they go out only after the write that marks them is accepted.

use custody_crds::{Applied, ChangePhase, CustodyChange, CustodyChangeStatus, Lift};
use custody_engine::{Standing, approvers};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Map, Value, json};

use super::standing::{Judged, team};

/// Something the controller tells about a request: an Event on it and, for a proposal and a
/// decision, a notice to the owning team. The names are the Events' reasons and the notices'
/// kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announcement {
    /// A new request waits for people.
    Proposed,
    /// Enough people approved it: the webhook admits its change.
    Approved,
    /// A person rejected it.
    Rejected,
    /// The workload runs its change: the approval is spent.
    Applied,
    /// It was not approved, or not applied, in time.
    Expired,
}

impl Announcement {
    /// The Event reason and notice kind.
    pub const fn reason(self) -> &'static str {
        match self {
            Announcement::Proposed => "ChangeProposed",
            Announcement::Approved => "ChangeApproved",
            Announcement::Rejected => "ChangeRejected",
            Announcement::Applied => "ChangeApplied",
            Announcement::Expired => "ChangeExpired",
        }
    }

    /// Whether the owning team gets a notice besides the Event.
    pub const fn notifies(self) -> bool {
        matches!(
            self,
            Announcement::Proposed | Announcement::Approved | Announcement::Rejected
        )
    }
}

/// The status fields the controller owns that differ from what is written. A merge patch of
/// them leaves the approvals and the rejection, which people write, alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusPatch {
    /// The new phase.
    pub phase: Option<ChangePhase>,
    /// The new deadline; `Some(None)` removes it.
    pub expires_at: Option<Option<Timestamp>>,
    /// The new sentence.
    pub message: Option<String>,
    /// The revision the change admitted.
    pub applied: Option<Applied>,
    /// The proposal is announced with this write.
    pub proposal_notified: bool,
    /// The decision is announced with this write.
    pub decision_notified: bool,
}

impl StatusPatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The `status` of the merge patch.
    pub fn status(&self) -> Value {
        let mut status = Map::new();
        if let Some(phase) = self.phase {
            status.insert("phase".into(), json!(phase.as_str()));
        }
        if let Some(expires_at) = &self.expires_at {
            let value = expires_at.map_or(Value::Null, |t| json!(Time(t)));
            status.insert("expiresAt".into(), value);
        }
        if let Some(message) = &self.message {
            status.insert("message".into(), json!(message));
        }
        if let Some(applied) = &self.applied {
            status.insert("applied".into(), json!(applied));
        }
        if self.proposal_notified {
            status.insert("proposalNotified".into(), json!(true));
        }
        if self.decision_notified {
            status.insert("decisionNotified".into(), json!(true));
        }
        Value::Object(status)
    }
}

/// What one look at a request concluded.
#[derive(Clone, Debug, PartialEq)]
pub struct Review {
    /// Where the request stands once the patch is written.
    pub phase: ChangePhase,
    /// What to write.
    pub patch: StatusPatch,
    /// What to announce once the write is accepted.
    pub announce: Vec<Announcement>,
    /// The request admits its change and has not admitted a revision yet: whether the
    /// workload now runs the change is to be looked at.
    pub consume: bool,
    /// When the standing changes by itself (the end of the approvals' window or of the
    /// approval): when to look again at the latest.
    pub deadline: Option<Timestamp>,
    /// Seconds from the proposal to the approval that made the quorum, when the approval is
    /// announced with this write.
    pub approval_seconds: Option<f64>,
}

/// The fields the controller owns, as they should be.
#[derive(Clone, Debug, PartialEq)]
struct Wanted {
    phase: ChangePhase,
    expires_at: Option<Timestamp>,
    message: String,
}

/// Reviews `change`, judged under the strictest protecting policy (`None`: no policy's
/// approval protects it any more).
pub fn review(change: &CustodyChange, judged: Option<&Judged<'_>>) -> Review {
    let status = change.status.clone().unwrap_or_default();
    let wanted = wanted(change, judged);
    let mut patch = StatusPatch {
        phase: (status.phase != Some(wanted.phase)).then_some(wanted.phase),
        // To the second, as `Time` is written: a sub-second deadline would differ forever.
        expires_at: (status.expires_at.as_ref().map(|t| t.0.as_second())
            != wanted.expires_at.map(|t| t.as_second()))
        .then_some(wanted.expires_at),
        message: (status.message.as_deref() != Some(wanted.message.as_str()))
            .then(|| wanted.message.clone()),
        ..StatusPatch::default()
    };
    let announce = due(&status, wanted.phase, judged.is_some());
    patch.proposal_notified = announce.contains(&Announcement::Proposed);
    patch.decision_notified = status.decision_notified != Some(true)
        && announce
            .iter()
            .any(|a| matches!(a, Announcement::Approved | Announcement::Rejected));
    let approval_seconds = judged
        .filter(|_| announce.contains(&Announcement::Approved))
        .and_then(|j| quorum_seconds(change, j));
    let (consume, deadline) = match judged.map(|j| &j.standing) {
        Some(Standing::Admits { until, .. }) => (true, Some(*until)),
        Some(Standing::Pending { until, .. }) => (false, *until),
        _ => (false, None),
    };
    Review {
        phase: wanted.phase,
        patch,
        announce,
        consume,
        deadline,
        approval_seconds,
    }
}

/// What is due to be announced about a request whose status is `status` and whose phase is
/// becoming `phase`; `protected` when some policy's approval protects it.
fn due(status: &CustodyChangeStatus, phase: ChangePhase, protected: bool) -> Vec<Announcement> {
    let mut due = Vec::new();
    let live = matches!(phase, ChangePhase::Pending | ChangePhase::Approved);
    if protected && live && status.proposal_notified != Some(true) {
        due.push(Announcement::Proposed);
    }
    let decided = status.decision_notified == Some(true);
    if phase == ChangePhase::Approved && !decided {
        due.push(Announcement::Approved);
    }
    // A rejection after an announced approval is announced too: it takes the approval back.
    let takes_back = decided && status.phase == Some(ChangePhase::Approved);
    if phase == ChangePhase::Rejected && (!decided || takes_back) {
        due.push(Announcement::Rejected);
    }
    if phase == ChangePhase::Expired && status.phase != Some(ChangePhase::Expired) {
        due.push(Announcement::Expired);
    }
    due
}

impl Review {
    /// The review once the workload was seen running the change: the revision is written, the
    /// phase becomes Applied and the approval is spent.
    #[must_use]
    pub fn applied(mut self, change: &CustodyChange, applied: Applied) -> Self {
        let had_deadline = change
            .status
            .as_ref()
            .is_some_and(|s| s.expires_at.is_some());
        self.phase = ChangePhase::Applied;
        self.patch.phase = Some(ChangePhase::Applied);
        self.patch.message = Some(applied_message(change, &applied));
        self.patch.expires_at = had_deadline.then_some(None);
        self.patch.applied = Some(applied);
        self.announce.push(Announcement::Applied);
        self.consume = false;
        self.deadline = None;
        self
    }
}

fn wanted(change: &CustodyChange, judged: Option<&Judged<'_>>) -> Wanted {
    let status = change.status.clone().unwrap_or_default();
    if let Some(rejection) = &status.rejection {
        return settled(ChangePhase::Rejected, rejected_message(rejection));
    }
    if let Some(applied) = &status.applied {
        return settled(ChangePhase::Applied, applied_message(change, applied));
    }
    let Some(judged) = judged else {
        // An expired request stays expired: nothing it could admit is waiting.
        if status.phase == Some(ChangePhase::Expired) {
            return Wanted {
                phase: ChangePhase::Expired,
                expires_at: status.expires_at.map(|t| t.0),
                message: status.message.unwrap_or_default(),
            };
        }
        return settled(
            ChangePhase::Pending,
            "no CustodyPolicy's approval protects this change any more, so its revision needs none"
                .to_string(),
        );
    };
    let policy = &judged.policy.name;
    let who = judged.approval.approvers_text(team(change));
    match &judged.standing {
        Standing::Admits { approvers, until } => Wanted {
            phase: ChangePhase::Approved,
            expires_at: Some(*until),
            message: format!(
                "approved by {} under policy {policy:?}: the webhook admits this exact change until {}",
                approvers.join(", "),
                stamp(*until)
            ),
        },
        Standing::Pending { have, need, until } => Wanted {
            phase: ChangePhase::Pending,
            expires_at: *until,
            message: format!(
                "{have} of {need} approval{} under policy {policy:?}; waiting for {who}{}",
                if *need == 1 { "" } else { "s" },
                until.map_or(String::new(), |u| format!(" until {}", stamp(u)))
            ),
        },
        Standing::Expired(at) => {
            let need = judged.approval.spec.required.clamp(1, 2) as usize;
            let quorum = approvers(&change.spec.proposer, &status.approvals).len() >= need;
            let what = if quorum {
                "approved but not applied"
            } else {
                "not approved"
            };
            Wanted {
                phase: ChangePhase::Expired,
                expires_at: Some(*at),
                message: format!(
                    "expired at {}: {what} in time under policy {policy:?}; propose the change again",
                    stamp(*at)
                ),
            }
        }
        // The status settles these above; the engine only agrees.
        Standing::Rejected(rejection) => {
            settled(ChangePhase::Rejected, rejected_message(rejection))
        }
        Standing::Applied(revision) => settled(
            ChangePhase::Applied,
            format!("applied as revision {revision}; the approval is spent"),
        ),
    }
}

fn settled(phase: ChangePhase, message: String) -> Wanted {
    Wanted {
        phase,
        expires_at: None,
        message,
    }
}

fn rejected_message(rejection: &Lift) -> String {
    format!("rejected by {}: {}", rejection.by, rejection.reason.trim())
}

/// The sentence of an applied request.
pub fn applied_message(change: &CustodyChange, applied: &Applied) -> String {
    let w = &change.spec.workload;
    format!(
        "applied: {} {} runs it as revision {} since {}; the approval is spent",
        w.kind,
        w.name,
        applied.revision,
        stamp(applied.at.0)
    )
}

/// Seconds from the proposal to the approval that completed the quorum.
fn quorum_seconds(change: &CustodyChange, judged: &Judged<'_>) -> Option<f64> {
    let created = change.metadata.creation_timestamp.as_ref()?.0;
    let status = change.status.as_ref()?;
    let need = judged.approval.spec.required.clamp(1, 2) as usize;
    let quorum = approvers(&change.spec.proposer, &status.approvals)
        .into_iter()
        .nth(need - 1)?;
    let seconds = quorum.at.0.duration_since(created).as_secs_f64();
    Some(seconds.max(0.0))
}

/// A time as messages write it.
pub fn stamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::changes::standing::judge;
    use crate::decide::changes::tests::{PROPOSER, approved, change, policies, rejected, t};
    use custody_crds::CustodyChangeStatus;

    fn look(c: &CustodyChange, now: i64) -> Review {
        let set = policies(&[("reviewed", "required: 2\nvalidFor: 1h")]);
        let judged = judge(&set, c, None, t(now));
        review(c, judged.as_ref())
    }

    /// The request as the controller would have left it after `review`.
    fn written(mut c: CustodyChange, r: &Review) -> CustodyChange {
        let mut status = serde_json::to_value(c.status.clone().unwrap_or_default()).unwrap();
        custody_testkit::fake_apiserver::merge(&mut status, &r.patch.status());
        c.status = Some(serde_json::from_value::<CustodyChangeStatus>(status).unwrap());
        c
    }

    #[test]
    fn a_request_by_situation() {
        use Announcement::*;
        // (situation, request, seconds after creation, phase, announced, consume)
        type Case<'a> = (
            &'a str,
            CustodyChange,
            i64,
            ChangePhase,
            Vec<Announcement>,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "a new proposal is announced and waits",
                change("web"),
                60,
                ChangePhase::Pending,
                vec![Proposed],
                false,
            ),
            (
                "one of two approvals: still pending",
                approved(change("web"), &["alice"]),
                120,
                ChangePhase::Pending,
                vec![Proposed],
                false,
            ),
            (
                "the quorum: approved, announced, and the workload is looked at",
                approved(change("web"), &["alice", "bob"]),
                180,
                ChangePhase::Approved,
                vec![Proposed, Approved],
                true,
            ),
            (
                "the proposer's own approval does not count",
                approved(change("web"), &["alice", PROPOSER]),
                180,
                ChangePhase::Pending,
                vec![Proposed],
                false,
            ),
            (
                "rejected",
                rejected(change("web"), "carol"),
                120,
                ChangePhase::Rejected,
                vec![Rejected],
                false,
            ),
            (
                "nobody approved within the window: expired, never proposed late",
                change("web"),
                2 * 3600,
                ChangePhase::Expired,
                vec![Expired],
                false,
            ),
        ];
        for (situation, c, now, phase, announced, consume) in cases {
            let r = look(&c, now);
            assert_eq!(r.phase, phase, "{situation}: phase");
            assert_eq!(r.announce, announced, "{situation}: announced");
            assert_eq!(r.consume, consume, "{situation}: consume");
            assert_eq!(r.patch.phase, Some(phase), "{situation}: phase written");
            // Written, the same look writes and announces nothing more.
            let again = look(&written(c, &r), now);
            assert!(again.patch.is_empty(), "{situation}: {:?}", again.patch);
            assert!(
                again.announce.is_empty(),
                "{situation}: {:?}",
                again.announce
            );
        }
    }

    #[test]
    fn messages_and_deadlines_say_where_it_stands() {
        let r = look(&approved(change("web"), &["alice"]), 60);
        assert_eq!(
            r.patch.message.as_deref(),
            Some(
                "1 of 2 approvals under policy \"reviewed\"; waiting for a member of CustodyTeam \"team-web\" until 2027-01-15T09:00:00Z"
            )
        );
        assert_eq!(r.deadline, Some(t(3600)));
        assert_eq!(r.patch.expires_at, Some(Some(t(3600))));
        let r = look(&approved(change("web"), &["alice", "bob"]), 300);
        // bob approved at 120 s: the approval admits for an hour from then.
        assert_eq!(r.deadline, Some(t(120 + 3600)));
        assert_eq!(r.approval_seconds, Some(120.0));
        assert!(
            r.patch
                .message
                .as_deref()
                .unwrap()
                .starts_with("approved by alice, bob under policy \"reviewed\""),
            "{:?}",
            r.patch.message
        );
        let r = look(&approved(change("web"), &["alice", "bob"]), 120 + 3600 + 1);
        assert_eq!(r.phase, ChangePhase::Expired);
        assert!(
            r.patch
                .message
                .as_deref()
                .unwrap()
                .contains("approved but not applied in time"),
            "{:?}",
            r.patch.message
        );
    }

    #[test]
    fn applied_once_and_settled_after() {
        let c = approved(change("web"), &["alice", "bob"]);
        let applied = Applied {
            revision: "3".into(),
            generation: Some(3),
            at: Time(t(200)),
        };
        let r = look(&c, 200).applied(&c, applied.clone());
        assert_eq!(r.phase, ChangePhase::Applied);
        assert_eq!(
            r.announce,
            [
                Announcement::Proposed,
                Announcement::Approved,
                Announcement::Applied
            ]
        );
        assert_eq!(r.patch.applied, Some(applied));
        assert_eq!(
            r.patch.message.as_deref(),
            Some(
                "applied: Deployment web runs it as revision 3 since 2027-01-15T08:03:20Z; the approval is spent"
            )
        );
        assert_eq!(r.patch.expires_at, None, "there was no deadline to remove");
        let status = r.patch.status();
        assert_eq!(status["applied"]["revision"], "3");
        assert_eq!(status["phase"], "Applied");
        let after = written(c, &r);
        // Long after any window: applied stays applied, with nothing more to write.
        let again = look(&after, 10 * 3600);
        assert_eq!(again.phase, ChangePhase::Applied);
        assert!(again.patch.is_empty(), "{:?}", again.patch);
        assert!(!again.consume);
    }

    #[test]
    fn a_rejection_after_an_announced_approval_is_announced() {
        let c = approved(change("web"), &["alice", "bob"]);
        let r = look(&c, 200);
        let c = rejected(written(c, &r), "carol");
        let r = look(&c, 300);
        assert_eq!(r.announce, [Announcement::Rejected]);
        assert!(!r.patch.decision_notified, "already set");
        assert_eq!(r.patch.phase, Some(ChangePhase::Rejected));
        assert_eq!(r.patch.expires_at, Some(None), "the deadline goes");
        assert!(look(&written(c, &r), 400).announce.is_empty());
    }

    #[test]
    fn an_expired_request_stays_expired_when_its_policy_goes() {
        let c = look_written(change("web"), 2 * 3600);
        assert_eq!(c.status.as_ref().unwrap().phase, Some(ChangePhase::Expired));
        let r = review(&c, None);
        assert_eq!(r.phase, ChangePhase::Expired);
        assert!(r.patch.is_empty(), "{:?}", r.patch);
    }

    fn look_written(c: CustodyChange, now: i64) -> CustodyChange {
        let r = look(&c, now);
        written(c, &r)
    }

    #[test]
    fn a_request_no_policy_protects_waits_and_says_why() {
        let c = approved(change("web"), &["alice", "bob"]);
        let r = review(&c, None);
        assert_eq!(r.phase, ChangePhase::Pending);
        assert!(r.announce.is_empty());
        assert!(!r.consume);
        assert!(
            r.patch
                .message
                .as_deref()
                .unwrap()
                .starts_with("no CustodyPolicy's approval protects this change"),
        );
    }
}
