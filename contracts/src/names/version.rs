//! `Version`: the semantic version of one contract document.

use super::NameError;

/// A contract's semantic version (`1.3.0`). The major version is part of
/// every subject the contract declares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(semver::Version);

impl Version {
    /// Parses a semantic version (`MAJOR.MINOR.PATCH`, with optional
    /// pre-release and build parts).
    pub fn parse(input: &str) -> Result<Self, NameError> {
        semver::Version::parse(input).map(Self).map_err(|err| {
            NameError::new(
                "version",
                input,
                format!("{err}; expected MAJOR.MINOR.PATCH such as 1.3.0"),
            )
        })
    }

    /// Builds a version from its three numbers.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self(semver::Version::new(major, minor, patch))
    }

    /// The major version, which subjects carry as `v<major>`.
    pub fn major(&self) -> u64 {
        self.0.major
    }

    /// The underlying semver value, for comparisons and ranges.
    pub fn as_semver(&self) -> &semver::Version {
        &self.0
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Version {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Version {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Version".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_semver() {
        let version = Version::parse("1.3.0").unwrap();
        assert_eq!(version.major(), 1);
        assert_eq!(version.to_string(), "1.3.0");
        assert!(Version::parse("2.0.0-rc.1+build.5").is_ok());
        assert!(Version::parse("1.3.0").unwrap() < Version::parse("1.10.0").unwrap());
    }

    #[test]
    fn refuses_partial_versions() {
        for bad in ["1", "1.3", "v1.3.0", "", "1.3.0.0", "01.2.3"] {
            let err = Version::parse(bad).unwrap_err();
            assert!(err.reason.contains("MAJOR.MINOR.PATCH"), "{bad:?}: {err}");
        }
    }
}
