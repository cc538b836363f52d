//! Readiness as a set of named conditions, all of which must hold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

type Conditions = Vec<(String, Arc<AtomicBool>)>;

/// A set of named conditions. The process is ready when every registered condition is.
#[derive(Clone, Default)]
pub struct Readiness {
    conditions: Arc<Mutex<Conditions>>,
}

/// The handle that flips one condition.
#[derive(Clone, Debug)]
pub struct ReadyHandle {
    ready: Arc<AtomicBool>,
}

impl ReadyHandle {
    /// Marks the condition as holding or not.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the condition holds.
    pub fn get(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

impl Readiness {
    /// An empty set, which is ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a condition, initially not holding.
    pub fn register(&self, name: impl Into<String>) -> ReadyHandle {
        let ready = Arc::new(AtomicBool::new(false));
        self.conditions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.into(), ready.clone()));
        ReadyHandle { ready }
    }

    /// Whether every condition holds.
    pub fn is_ready(&self) -> bool {
        self.pending().is_empty()
    }

    /// The names of the conditions that do not hold yet.
    pub fn pending(&self) -> Vec<String> {
        self.conditions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, ready)| !ready.load(Ordering::Acquire))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_holds() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready());
        let policies = readiness.register("policies");
        let namespaces = readiness.register("namespaces");
        assert_eq!(readiness.pending(), vec!["policies", "namespaces"]);
        policies.set(true);
        assert!(!readiness.is_ready());
        namespaces.set(true);
        assert!(readiness.is_ready());
        namespaces.set(false);
        assert_eq!(readiness.pending(), vec!["namespaces"]);
    }
}
