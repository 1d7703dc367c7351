//! `MemberName`: the name of an operation or event inside a contract.

use super::{NameError, check_kebab, string_newtype};

/// The name of an operation or an event within a contract (`reserve`,
/// `out-of-stock`): lowercase kebab-case, at most 64 characters, the last
/// token of its subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberName(String);

impl MemberName {
    /// The longest name accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses an operation or event name.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        check_kebab("operation or event name", input, Self::MAX_LEN)?;
        Ok(Self(input.to_owned()))
    }
}

string_newtype!(MemberName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_member_names() {
        assert!(MemberName::parse("out-of-stock").is_ok());
        assert!(MemberName::parse("get-points").is_ok());
        assert!(MemberName::parse("Reserve").is_err());
        assert!(MemberName::parse("reserve.now").is_err());
    }
}
