//! `TemplateId`, the name the app and the matcher give an enrolled template: a leaf type
//! that the entities, the errors and the gallery all use, and that uses nothing.

use serde::{Deserialize, Serialize};

/// Identifier of an enrolled template: chosen at random by the app (so that its sealed
/// label can be bound to it) in `[1, 2^53)`, which survives JSON numbers and reveals no
/// enrolment order. Opaque to the matcher.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct TemplateId(pub u64);

impl TemplateId {
    /// Ids lie in `[1, ID_LIMIT)`.
    pub const LIMIT: u64 = 1 << 53;

    /// Whether the id lies in the valid range.
    pub fn is_valid(self) -> bool {
        (1..Self::LIMIT).contains(&self.0)
    }
}

impl std::fmt::Display for TemplateId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for TemplateId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(TemplateId)
    }
}
