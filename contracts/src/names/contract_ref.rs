//! `ContractRef` (`inventory@1#reserve`) and `ContractId` (`inventory@1.3.0`).

use super::{MemberName, NameError, ServiceName, Version};

/// A reference to an operation or event of a service's major version, as
/// written in `consumes`, `calls` and workflow steps: `inventory@1#reserve`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContractRef {
    /// The service that owns the operation or event.
    pub service: ServiceName,
    /// The major version of the service's contract.
    pub major: u64,
    /// The operation or event within that contract.
    pub member: MemberName,
}

/// One exact contract version, as carried in the `Soa-Contract` header:
/// `inventory@1.3.0`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContractId {
    /// The service.
    pub service: ServiceName,
    /// The exact version of its contract.
    pub version: Version,
}

impl ContractRef {
    /// Parses `service@major#member`.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        const KIND: &str = "contract reference";
        const SHAPE: &str = "expected service@major#name, such as inventory@1#reserve";
        let (service, rest) = input
            .split_once('@')
            .ok_or_else(|| NameError::new(KIND, input, format!("it has no '@'; {SHAPE}")))?;
        let (major, member) = rest
            .split_once('#')
            .ok_or_else(|| NameError::new(KIND, input, format!("it has no '#'; {SHAPE}")))?;
        let service = ServiceName::parse(service).map_err(|err| NameError::new(KIND, input, err.to_string()))?;
        let major = parse_major(major)
            .ok_or_else(|| NameError::new(KIND, input, format!("{major:?} is not a major version number; {SHAPE}")))?;
        let member = MemberName::parse(member).map_err(|err| NameError::new(KIND, input, err.to_string()))?;
        Ok(Self { service, major, member })
    }
}

impl ContractId {
    /// Parses `service@MAJOR.MINOR.PATCH`.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        const KIND: &str = "contract id";
        let (service, version) = input.split_once('@').ok_or_else(|| {
            NameError::new(
                KIND,
                input,
                "it has no '@'; expected service@version, such as inventory@1.3.0",
            )
        })?;
        let service = ServiceName::parse(service).map_err(|err| NameError::new(KIND, input, err.to_string()))?;
        let version = Version::parse(version).map_err(|err| NameError::new(KIND, input, err.to_string()))?;
        Ok(Self { service, version })
    }

    /// The major version of this contract.
    pub fn major(&self) -> u64 {
        self.version.major()
    }
}

/// A major version: decimal digits without a leading zero (except `0`).
fn parse_major(text: &str) -> Option<u64> {
    let well_formed =
        !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    if well_formed { text.parse().ok() } else { None }
}

impl std::fmt::Display for ContractRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}#{}", self.service, self.major, self.member)
    }
}

impl std::fmt::Display for ContractId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.service, self.version)
    }
}

/// String serde and `FromStr` for the two reference types, which display as
/// the text they parse from.
macro_rules! display_serde {
    ($name:ident) => {
        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
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

display_serde!(ContractRef);
display_serde!(ContractId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_refs() {
        let reference = ContractRef::parse("inventory@1#reserve").unwrap();
        assert_eq!(reference.service.as_str(), "inventory");
        assert_eq!(reference.major, 1);
        assert_eq!(reference.member.as_str(), "reserve");
        assert_eq!(reference.to_string(), "inventory@1#reserve");
        assert!(ContractRef::parse("orders@12#out-of-stock").is_ok());
        for (bad, why) in [
            ("inventory#reserve", "no '@'"),
            ("inventory@1", "no '#'"),
            ("inventory@1.3.0#reserve", "not a major version"),
            ("inventory@01#reserve", "not a major version"),
            ("inventory@#reserve", "not a major version"),
            ("Inventory@1#reserve", "lowercase"),
            ("inventory@1#Reserve", "lowercase"),
        ] {
            let err = ContractRef::parse(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn contract_ids() {
        let id = ContractId::parse("inventory@1.3.0").unwrap();
        assert_eq!(id.major(), 1);
        assert_eq!(id.to_string(), "inventory@1.3.0");
        assert!(ContractId::parse("inventory@1").is_err());
        assert!(ContractId::parse("inventory").is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ContractId>(&json).unwrap(), id);
    }
}
