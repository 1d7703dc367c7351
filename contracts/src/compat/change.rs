//! What a compatibility check reports: each change with a stable code, where
//! it happens, what it does to the set of accepted messages, and whether that
//! breaks a given compatibility mode.

use serde::{Deserialize, Serialize};

/// Which way compatibility is checked, as in a schema registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// Data valid under the old schema is valid under the new one: new readers
    /// accept what old writers sent.
    Backward,
    /// Data valid under the new schema is valid under the old one: old readers
    /// accept what new writers send.
    Forward,
    /// Both.
    Full,
}

impl Mode {
    /// The opposite direction (FULL stays FULL).
    pub fn mirrored(self) -> Self {
        match self {
            Self::Backward => Self::Forward,
            Self::Forward => Self::Backward,
            Self::Full => Self::Full,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Backward => "BACKWARD",
            Self::Forward => "FORWARD",
            Self::Full => "FULL",
        })
    }
}

/// What a change does to the set of instances a schema accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Nothing: an annotation changed.
    None,
    /// The new schema accepts everything the old one did, and maybe more.
    Widens,
    /// The new schema accepts only what the old one did, and maybe less.
    Narrows,
    /// Some old instances are refused and some new ones accepted.
    Changes,
    /// The checker cannot tell exactly; counted as breaking by the strict
    /// verdict.
    Unclassified,
}

impl Effect {
    /// The effect seen from the other side (inside `not`, or when old and new
    /// swap roles).
    pub fn inverted(self) -> Self {
        match self {
            Self::Widens => Self::Narrows,
            Self::Narrows => Self::Widens,
            other => other,
        }
    }

    /// Whether this effect breaks `mode`: `Some(true)` breaks, `Some(false)`
    /// does not, `None` cannot be decided.
    pub fn breaks(self, mode: Mode) -> Option<bool> {
        match (self, mode) {
            (Self::None, _) => Some(false),
            (Self::Unclassified, _) => None,
            (Self::Changes, _) => Some(true),
            (Self::Widens, Mode::Backward) | (Self::Narrows, Mode::Forward) => Some(false),
            (Self::Widens | Self::Narrows, _) => Some(true),
        }
    }
}

/// Stable codes for every kind of change. The kebab-case name is part of the
/// public interface: ignore files and CI rules refer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeCode {
    /// Fewer JSON types are allowed.
    TypeNarrowed,
    /// More JSON types are allowed.
    TypeWidened,
    /// Some types were removed and others added.
    TypeChanged,
    /// An `enum` was added where any value was allowed.
    EnumAdded,
    /// The `enum` was removed.
    EnumRemoved,
    /// Values were removed from the `enum`.
    EnumNarrowed,
    /// Values were added to the `enum`.
    EnumWidened,
    /// Values were both removed from and added to the `enum`.
    EnumChanged,
    /// A `const` was added.
    ConstAdded,
    /// The `const` was removed.
    ConstRemoved,
    /// The `const` value changed.
    ConstChanged,
    /// A bound (`minimum`, `maxLength`, ...) was added.
    BoundAdded,
    /// A bound was removed.
    BoundRemoved,
    /// A bound now allows fewer values.
    BoundTightened,
    /// A bound now allows more values.
    BoundLoosened,
    /// `multipleOf` was added or now allows fewer values.
    MultipleOfTightened,
    /// `multipleOf` was removed or now allows more values.
    MultipleOfLoosened,
    /// `multipleOf` changed to a value neither a multiple nor a divisor of the old one.
    MultipleOfChanged,
    /// A `pattern` was added.
    PatternAdded,
    /// The `pattern` was removed.
    PatternRemoved,
    /// The `pattern` changed; regular expressions cannot be compared exactly.
    PatternChanged,
    /// A `format` was added.
    FormatAdded,
    /// The `format` was removed.
    FormatRemoved,
    /// The `format` changed.
    FormatChanged,
    /// `uniqueItems` was turned on.
    UniqueItemsAdded,
    /// `uniqueItems` was turned off.
    UniqueItemsRemoved,
    /// A named property now has a schema of its own.
    PropertyAdded,
    /// A named property lost its schema and falls to the rest of the content model.
    PropertyRemoved,
    /// A property became required.
    RequiredAdded,
    /// A property is no longer required.
    RequiredRemoved,
    /// `patternProperties` changed in a way that cannot be compared exactly.
    PatternPropertiesChanged,
    /// A `dependentRequired` entry was added or grew.
    DependentRequiredAdded,
    /// A `dependentRequired` entry was removed or shrank.
    DependentRequiredRemoved,
    /// A `dependentSchemas` entry was added.
    DependentSchemaAdded,
    /// A `dependentSchemas` entry was removed.
    DependentSchemaRemoved,
    /// An array position gained a schema of its own (`prefixItems`).
    ItemPositionAdded,
    /// An array position lost its own schema.
    ItemPositionRemoved,
    /// An `anyOf` gained an alternative.
    AnyOfArmAdded,
    /// An `anyOf` lost an alternative.
    AnyOfArmRemoved,
    /// A `oneOf` gained an alternative.
    OneOfArmAdded,
    /// A `oneOf` lost an alternative.
    OneOfArmRemoved,
    /// An `allOf` gained a schema.
    AllOfArmAdded,
    /// An `allOf` lost a schema.
    AllOfArmRemoved,
    /// A combinator (`anyOf`, `oneOf`, `allOf`) was added or removed, or its
    /// alternatives were reordered so they cannot be paired.
    CombinatorChanged,
    /// A `not` was added.
    NotAdded,
    /// The `not` was removed.
    NotRemoved,
    /// `if`/`then`/`else` changed; the checker cannot decide it.
    ConditionalChanged,
    /// A `contains` (or its counts) was added.
    ContainsAdded,
    /// The `contains` was removed.
    ContainsRemoved,
    /// The `contains` schema changed while `maxContains` caps the matches, so
    /// more or fewer matches can break either way.
    ContainsChanged,
    /// A `$ref` points elsewhere or to a schema the checker cannot follow.
    RefChanged,
    /// A `$dynamicRef` or recursive reference changed.
    DynamicRefChanged,
    /// The schema now accepts nothing (`false`).
    SchemaClosed,
    /// The schema now accepts anything (`true`).
    SchemaOpened,
    /// `unevaluatedProperties`/`unevaluatedItems` changed.
    UnevaluatedChanged,
    /// A keyword the checker does not know changed.
    UnknownKeywordChanged,
    /// The schemas are too complex to compare within the checker's bound
    /// on work (deeply nested alternatives); undecided.
    TooComplexToCompare,
    /// An annotation (`title`, `description`, `examples`, ...) changed.
    AnnotationChanged,
    /// A contract gained an operation.
    OperationAdded,
    /// A contract lost an operation its callers may use.
    OperationRemoved,
    /// A contract gained an event.
    EventAdded,
    /// A contract no longer publishes an event its consumers may wait for.
    EventRemoved,
    /// An operation or event moved to another subject.
    SubjectChanged,
    /// An operation may now reply with an error code callers do not know.
    ErrorCodeAdded,
    /// An operation no longer replies with an error code.
    ErrorCodeRemoved,
    /// An operation is no longer idempotent, though callers may retry it.
    IdempotencyDropped,
    /// An operation became idempotent.
    IdempotencyAdded,
    /// The compatibility policy changed.
    PolicyChanged,
    /// The major version changed: anything may break, subjects must move.
    MajorVersionChanged,
    /// The new version is not greater than the old one.
    VersionNotIncreased,
}

impl ChangeCode {
    /// The stable kebab-case name, such as `type-narrowed`.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

impl std::fmt::Display for ChangeCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// One change between two schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What kind of change.
    pub code: ChangeCode,
    /// JSON pointer of the change in the new schema (or document).
    pub pointer: String,
    /// JSON pointer of the same place in the old schema.
    pub old_pointer: String,
    /// What it does to the accepted instances.
    pub effect: Effect,
    /// One line saying what changed.
    pub message: String,
    /// How to make the change safe, where there is a known way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Change {
    /// Whether this change breaks `mode` (`None`: cannot be decided).
    pub fn breaks(&self, mode: Mode) -> Option<bool> {
        self.effect.breaks(mode)
    }
}

/// The two verdicts of a check, side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Compatible when every unclassified change is counted as breaking.
    pub strict: bool,
    /// Compatible when unclassified changes are given the benefit of the doubt.
    pub lenient: bool,
}

impl Verdict {
    /// Folds the answers to "does this change break?": `Some(true)` fails
    /// both verdicts, `None` (undecided) fails only the strict one.
    pub fn from_answers(answers: impl IntoIterator<Item = Option<bool>>) -> Self {
        let mut verdict = Self {
            strict: true,
            lenient: true,
        };
        for answer in answers {
            match answer {
                Some(true) => {
                    verdict.strict = false;
                    verdict.lenient = false;
                }
                None => verdict.strict = false,
                Some(false) => {}
            }
        }
        verdict
    }
}

/// Decides `mode` over a list of changes.
pub fn verdict<'a>(changes: impl IntoIterator<Item = &'a Change>, mode: Mode) -> Verdict {
    Verdict::from_answers(changes.into_iter().map(|change| change.breaks(mode)))
}
