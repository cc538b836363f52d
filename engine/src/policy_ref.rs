//! The part of a compiled policy every rule quotes: its name and its spec. A leaf, so the rule
//! modules whose compiled parts the policy holds (limits, probation, signatures) take it as an
//! argument instead of importing the policy that imports them.

use custody_crds::CustodyPolicySpec;

/// A policy's name and spec, borrowed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PolicyRef<'p> {
    pub name: &'p str,
    pub spec: &'p CustodyPolicySpec,
}
