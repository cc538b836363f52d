//! The requester and the object's provenance annotations, read once per request: what every rule
//! looks at. A leaf, so the rule modules share it without importing one another.

use std::borrow::Cow;

use custody_crds::{Actor, AnnotationKey, Vocabulary};

use crate::object::WorkloadObject;

/// The vocabulary's annotations of one object, read once: every rule of every policy looks them
/// up by key, so they are unescaped a single time per request.
pub(crate) struct Annotations<'a>([Option<Cow<'a, str>>; AnnotationKey::ALL.len()]);

impl<'a> Annotations<'a> {
    pub(crate) fn read(vocabulary: &Vocabulary, object: &WorkloadObject<'a>) -> Self {
        let mut values: [Option<Cow<'a, str>>; AnnotationKey::ALL.len()] = Default::default();
        for (name, raw) in object.metadata.annotations.iter().flatten() {
            if let Some(key) = vocabulary.parse_key(name) {
                values[key as usize] = serde_json::from_str::<Cow<'a, str>>(raw.get()).ok();
            }
        }
        Self(values)
    }

    pub(crate) fn get(&self, key: AnnotationKey) -> Option<&str> {
        self.0[key as usize].as_deref()
    }
}

/// What every rule may look at.
pub(crate) struct Subject<'s, 'a> {
    pub vocabulary: &'s Vocabulary,
    pub annotations: Annotations<'a>,
    pub username: &'s str,
    pub groups: &'s [Cow<'a, str>],
}

impl Subject<'_, '_> {
    pub(crate) fn value(&self, key: AnnotationKey) -> Option<Cow<'_, str>> {
        self.annotations.get(key).map(Cow::Borrowed)
    }

    pub(crate) fn actor(&self) -> Option<Actor> {
        self.value(AnnotationKey::Actor)?.parse().ok()
    }

    pub(crate) fn field(&self, key: AnnotationKey) -> String {
        format!("metadata.annotations[{}]", self.vocabulary.key(key))
    }
}

/// A value cut to a length a denial can quote.
pub(crate) fn shorten(value: &str) -> Cow<'_, str> {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &value[..cut])),
        None => Cow::Borrowed(value),
    }
}
