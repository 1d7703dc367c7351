//! Newtypes for the names the system speaks in, each parsed once at the edge.
//!
//! Inside soabus a service name, a subject, a version or a contract reference is
//! never a raw string: it is one of these types, so it has been checked.

mod contract_ref;
mod member_name;
mod service_name;
mod subject;
mod version;

pub use contract_ref::{ContractId, ContractRef};
pub use member_name::MemberName;
pub use service_name::ServiceName;
pub use subject::{Subject, SubjectPattern};
pub use version::Version;

/// Why a name could not be parsed: what was given, what kind of name it should
/// have been, and what rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: {reason}")]
pub struct NameError {
    /// The kind of name that was expected ("service name", "subject", ...).
    pub kind: &'static str,
    /// The text that was given.
    pub input: String,
    /// The rule it broke, as a sentence fragment.
    pub reason: String,
}

impl NameError {
    pub(crate) fn new(kind: &'static str, input: &str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Implements `Display`, `FromStr`, `AsRef<str>` and string serde for a newtype
/// that holds its checked text in a `String` field named `0`.
macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The checked text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::names::NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string" })
            }
            fn inline_schema() -> bool {
                true
            }
        }
    };
}
pub(crate) use string_newtype;

/// True for the characters a lowercase kebab-case identifier may hold after its
/// first letter.
fn is_kebab_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// Checks a lowercase kebab-case identifier: starts with a letter, holds
/// letters, digits and single dashes, does not end with a dash.
pub(crate) fn check_kebab(kind: &'static str, input: &str, max_len: usize) -> Result<(), NameError> {
    if input.is_empty() {
        return Err(NameError::new(kind, input, "it is empty"));
    }
    if input.len() > max_len {
        return Err(NameError::new(
            kind,
            input,
            format!("it is {} characters long, the limit is {max_len}", input.len()),
        ));
    }
    if !input.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(NameError::new(kind, input, "it must start with a lowercase letter"));
    }
    if let Some(bad) = input.chars().find(|&c| !is_kebab_char(c)) {
        return Err(NameError::new(
            kind,
            input,
            format!("{bad:?} is not allowed; use lowercase letters, digits and '-'"),
        ));
    }
    if input.ends_with('-') || input.contains("--") {
        return Err(NameError::new(kind, input, "dashes must separate words"));
    }
    Ok(())
}
