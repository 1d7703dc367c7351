//! `ServiceName`: the name a service is registered and addressed under.

use super::{NameError, check_kebab, string_newtype};

/// A service's name: lowercase kebab-case (`inventory`, `order-view`), at most
/// 64 characters, so it can stand as one token of a NATS subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);

impl ServiceName {
    /// The longest name accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses a service name, saying which rule it broke when it is not one.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        check_kebab("service name", input, Self::MAX_LEN)?;
        Ok(Self(input.to_owned()))
    }
}

string_newtype!(ServiceName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kebab_case() {
        for ok in ["inventory", "order-view", "a", "payments2"] {
            assert_eq!(ServiceName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_other_shapes() {
        for bad in [
            "",
            "Inventory",
            "2pay",
            "order_view",
            "order view",
            "a.b",
            "end-",
            "a--b",
            "*",
        ] {
            let err = ServiceName::parse(bad).unwrap_err();
            assert_eq!(err.kind, "service name", "{bad:?}");
        }
        let long = "a".repeat(65);
        assert!(ServiceName::parse(&long).unwrap_err().reason.contains("limit is 64"));
    }

    #[test]
    fn serde_round_trip_checks_the_text() {
        let name: ServiceName = serde_json::from_str("\"orders\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"orders\"");
        let err = serde_json::from_str::<ServiceName>("\"Orders\"").unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
    }
}
