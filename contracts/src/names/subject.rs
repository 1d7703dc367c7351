//! `Subject` and `SubjectPattern`: NATS subjects, concrete and with wildcards.

use super::{NameError, string_newtype};

/// The longest subject accepted, in bytes. NATS itself allows more, but a
/// subject longer than this is a mistake in a contract.
const MAX_SUBJECT_LEN: usize = 512;

/// A concrete NATS subject a message can be published on
/// (`shop.inventory.v1.reserve`): dot-separated non-empty tokens of printable
/// ASCII, no whitespace and no wildcards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subject(String);

/// A NATS subject that may hold wildcards, as used to subscribe or search:
/// `*` stands for exactly one token, `>` for one or more trailing tokens and
/// may only be the last token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubjectPattern(String);

impl Subject {
    /// Parses a concrete subject; wildcards are refused.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        check_tokens("subject", input, false)?;
        Ok(Self(input.to_owned()))
    }

    /// The dot-separated tokens of the subject.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl SubjectPattern {
    /// Parses a subject pattern; `*` and `>` are allowed as whole tokens.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        check_tokens("subject pattern", input, true)?;
        Ok(Self(input.to_owned()))
    }

    /// True when the pattern holds a wildcard token.
    pub fn has_wildcards(&self) -> bool {
        self.0.split('.').any(|token| token == "*" || token == ">")
    }

    /// True when `subject` is one of the subjects this pattern stands for,
    /// by the NATS rules for `*` and `>`.
    pub fn matches(&self, subject: &Subject) -> bool {
        let mut subject_tokens = subject.tokens();
        for pattern_token in self.0.split('.') {
            match (pattern_token, subject_tokens.next()) {
                (">", Some(_)) => return true,
                ("*", Some(_)) => {}
                (literal, Some(token)) if literal == token => {}
                _ => return false,
            }
        }
        subject_tokens.next().is_none()
    }
}

impl From<Subject> for SubjectPattern {
    fn from(subject: Subject) -> Self {
        Self(subject.0)
    }
}

fn check_tokens(kind: &'static str, input: &str, wildcards_allowed: bool) -> Result<(), NameError> {
    if input.is_empty() {
        return Err(NameError::new(kind, input, "it is empty"));
    }
    if input.len() > MAX_SUBJECT_LEN {
        return Err(NameError::new(
            kind,
            input,
            format!("it is {} bytes long, the limit is {MAX_SUBJECT_LEN}", input.len()),
        ));
    }
    let token_count = input.split('.').count();
    for (index, token) in input.split('.').enumerate() {
        if token.is_empty() {
            return Err(NameError::new(
                kind,
                input,
                "it has an empty token; tokens are separated by single dots and the subject cannot start or end with a dot",
            ));
        }
        if let Some(bad) = token.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(NameError::new(
                kind,
                input,
                format!("{bad:?} is not allowed; subjects hold printable ASCII without whitespace"),
            ));
        }
        let is_wildcard = token == "*" || token == ">";
        if is_wildcard && !wildcards_allowed {
            return Err(NameError::new(
                kind,
                input,
                format!("the wildcard {token:?} is only allowed in patterns used to subscribe or search"),
            ));
        }
        if !is_wildcard && (token.contains('*') || token.contains('>')) {
            return Err(NameError::new(
                kind,
                input,
                format!("the token {token:?} mixes a wildcard with other characters; '*' and '>' must stand alone"),
            ));
        }
        if token == ">" && index + 1 != token_count {
            return Err(NameError::new(kind, input, "'>' may only be the last token"));
        }
    }
    Ok(())
}

string_newtype!(Subject);
string_newtype!(SubjectPattern);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concrete_subjects() {
        for ok in [
            "shop.inventory.v1.reserve",
            "a",
            "$SRV.PING",
            "_INBOX.abc123",
            "soa.registry.v1.get",
        ] {
            assert!(Subject::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("a..b", "empty token"),
            (".a", "empty token"),
            ("a.", "empty token"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            ("a.*.c", "only allowed in patterns"),
            ("a.>", "only allowed in patterns"),
            ("a.b*", "must stand alone"),
            ("caf\u{e9}", "printable ASCII"),
        ] {
            let err = Subject::parse(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
        assert!(Subject::parse(&"a".repeat(513)).is_err());
    }

    #[test]
    fn patterns_allow_wildcards_as_whole_tokens() {
        assert!(SubjectPattern::parse("shop.*.v1.>").is_ok());
        assert!(SubjectPattern::parse(">").is_ok());
        assert!(
            SubjectPattern::parse("a.>.b")
                .unwrap_err()
                .to_string()
                .contains("last token")
        );
        assert!(SubjectPattern::parse("a.b>").is_err());
        assert!(!SubjectPattern::parse("a.b").unwrap().has_wildcards());
    }

    #[test]
    fn pattern_matching_follows_nats_rules() {
        let check = |pattern: &str, subject: &str, expected: bool| {
            let pattern = SubjectPattern::parse(pattern).unwrap();
            let subject = Subject::parse(subject).unwrap();
            assert_eq!(pattern.matches(&subject), expected, "{pattern} ~ {subject}");
        };
        check("shop.*.v1.reserve", "shop.inventory.v1.reserve", true);
        check("shop.*.v1.reserve", "shop.inventory.v2.reserve", false);
        check("shop.>", "shop.inventory.v1.reserve", true);
        check("shop.>", "shop", false);
        check("shop.*", "shop.a.b", false);
        check("shop.inventory.v1.reserve", "shop.inventory.v1.reserve", true);
        check("shop.inventory.v1", "shop.inventory.v1.reserve", false);
        check(">", "a", true);
    }
}
