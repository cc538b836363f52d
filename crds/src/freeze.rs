//! `spec.freezes` and `spec.ownership` of a CustodyPolicy: change freezes that bind agents (and
//! whichever other actors a window names), and whether owners must be registered teams.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::vocabulary::Actor;

/// Whether a workload's `owner` is free text or must name a registered team.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OwnershipMode {
    /// Any value of the owner annotation's format (the default, as before teams existed).
    #[default]
    FreeForm,
    /// `owner` must name a CustodyTeam whose `namespaces` include the workload's namespace.
    /// `oncall` may then be omitted: the team's applies.
    Registered,
}

impl OwnershipMode {
    /// True for the default, so the field is left out of serialized policies.
    pub fn is_free_form(&self) -> bool {
        *self == OwnershipMode::FreeForm
    }
}

/// One change freeze. Either `schedule` and `duration` (a recurring window), or `start` and
/// `end` (a one-off window). During a freeze, a bound actor's new revision (a CREATE, or an
/// UPDATE that changes the pod template) is denied; scaling, metadata-only changes and
/// Custody's own reverts pass, and a human may break glass with a reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeWindow {
    /// The window's name, shown in denials.
    pub name: String,
    /// Shown in denials: why the freeze, whom to ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the window opens, as a cron expression in `timeZone`: five fields (`minute hour
    /// day-of-month month day-of-week`, days of the week by name, `MON-FRI`), or six or seven
    /// with seconds first and a year last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How long each opening lasts: `2h`, `62h`, `1d 12h` or ISO 8601 (`P1DT12H`). Days are
    /// calendar days in `timeZone`, so a one-day window spanning a DST change stays midnight
    /// to midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// The start of a one-off window: a date-time in `timeZone` (`2026-12-24T00:00:00`) or
    /// with an offset (`2026-12-24T00:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The end of a one-off window, excluded: at this instant the freeze is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// The IANA time zone of `schedule`, `start` and `end`, e.g. `Europe/Berlin`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// The actors the freeze binds.
    #[serde(default = "default_freeze_actors")]
    pub actors: Vec<Actor>,
}

fn default_time_zone() -> String {
    "UTC".to_string()
}

fn default_freeze_actors() -> Vec<Actor> {
    vec![Actor::Agent]
}
