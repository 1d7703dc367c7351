//! Connecting to the NATS server, and refusing a server too old for soabus.
//!
//! Every component connects through [`connect`], so every component checks the
//! server's version the same way: async-nats cannot create key-value buckets on
//! nats-server 2.9 (Debian's package), and the failure it gives then does not
//! say why. Refusing such a server up front, with a message that names the
//! version found and the fix, saves that hunt.
//!
//! Every connection also reports what the server says asynchronously: a
//! publish or subscription refused for lack of permission is logged with its
//! subject and kept for the runtime (`refusals`), which turns the timeout
//! the sender would otherwise see into an error that names the subject.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use semver::Version;

pub mod refusals;

/// The oldest nats-server that soabus works with.
///
/// 2.10 brought what the key-value store and the service API need here; 2.11+
/// adds per-message TTL, which features may ask for on their own.
pub const MIN_SERVER_VERSION: Version = Version::new(2, 10, 0);

/// The server URL used when nothing else is configured.
///
/// Reading `$NATS_URL` is the command line's job, not this library's.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// How to reach and authenticate with the NATS server.
///
/// `Debug` is written by hand so that the token and the password never end up
/// in a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectConfig {
    /// The server URL, such as `nats://127.0.0.1:4222`, or several separated
    /// by commas (a cluster's seed list).
    pub url: String,
    /// The connection name the server shows in its monitoring, if any.
    pub name: Option<String>,
    /// A `.creds` file holding a user JWT and its nkey seed.
    pub credentials_file: Option<PathBuf>,
    /// A token for token authentication.
    pub token: Option<String>,
    /// An nkey seed (`SU...`) for nkey authentication.
    pub nkey_seed: Option<String>,
    /// A file holding an nkey seed (`SU...`), read when connecting; the
    /// alternative to [`Self::nkey_seed`] that keeps the seed out of the
    /// process's arguments and environment.
    pub nkey_seed_file: Option<PathBuf>,
    /// The user for user-and-password authentication; needs [`Self::password`].
    pub user: Option<String>,
    /// The password for user-and-password authentication; needs [`Self::user`].
    pub password: Option<String>,
    /// Refuse to talk to the server without TLS.
    pub tls_required: bool,
    /// A PEM file with the root certificates that the server's certificate must chain to.
    pub root_certificates: Option<PathBuf>,
    /// A PEM client certificate for mutual TLS; needs [`Self::client_key`].
    pub client_certificate: Option<PathBuf>,
    /// The PEM private key of [`Self::client_certificate`].
    pub client_key: Option<PathBuf>,
    /// How long one attempt to connect may take before it fails.
    pub connect_timeout: Duration,
    /// The prefix of the connection's reply inboxes (`_INBOX` when `None`).
    /// A service whose NATS user has the permissions `soa contract
    /// permissions` prints connects with `_INBOX_<service>`
    /// ([`contracts::subjects::service_inbox_prefix`]), the only inboxes it
    /// may read. Each connection adds a unique token of its own after it.
    pub inbox_prefix: Option<String>,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            name: None,
            credentials_file: None,
            token: None,
            nkey_seed: None,
            nkey_seed_file: None,
            user: None,
            password: None,
            tls_required: false,
            root_certificates: None,
            client_certificate: None,
            client_key: None,
            connect_timeout: Duration::from_secs(5),
            inbox_prefix: None,
        }
    }
}

impl ConnectConfig {
    /// A configuration for the server at `url` with everything else left at its default.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        formatter
            .debug_struct("ConnectConfig")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("credentials_file", &self.credentials_file)
            .field("token", &redacted(&self.token))
            .field("nkey_seed", &redacted(&self.nkey_seed))
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("user", &self.user)
            .field("password", &redacted(&self.password))
            .field("tls_required", &self.tls_required)
            .field("root_certificates", &self.root_certificates)
            .field("client_certificate", &self.client_certificate)
            .field("client_key", &self.client_key)
            .field("connect_timeout", &self.connect_timeout)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

/// Why a connection to the NATS server could not be made or was refused.
///
/// The messages name the server and say what to do; the underlying async-nats
/// or I/O error is kept as the source, for a caller that prints the chain.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server is older than [`MIN_SERVER_VERSION`].
    #[error(
        "nats-server {found}{} is too old: soabus needs nats-server {MIN_SERVER_VERSION} or newer \
         (Debian's nats-server 2.9 package is too old); run `scripts/install-nats-server` to \
         install the project's pinned server",
        at_url(url.as_deref())
    )]
    ServerTooOld {
        /// The version the server reported.
        found: Version,
        /// The server's URL, when the check was made on a live connection.
        url: Option<String>,
    },

    /// The server reported a version that is not a semantic version.
    #[error(
        "nats-server{} reported the version {reported:?}, which is not a version number; soabus \
         needs nats-server {MIN_SERVER_VERSION} or newer (run `scripts/install-nats-server`)",
        at_url(url.as_deref())
    )]
    UnparsableServerVersion {
        /// What the server reported.
        reported: String,
        /// The server's URL, when the check was made on a live connection.
        url: Option<String>,
        /// Why it does not parse.
        #[source]
        source: semver::Error,
    },

    /// Only one of `user` and `password` was given.
    #[error("a NATS user and password must be given together, but only the {given} was given")]
    IncompleteUserAndPassword {
        /// `"user"` or `"password"`: the one that was given.
        given: &'static str,
    },

    /// Only one of `client_certificate` and `client_key` was given.
    #[error("a TLS client certificate and its key must be given together, but only the {given} was given")]
    IncompleteClientCertificate {
        /// `"certificate"` or `"key"`: the one that was given.
        given: &'static str,
    },

    /// The credentials file could not be read or does not hold credentials.
    #[error("could not read the NATS credentials file {}", path.display())]
    CredentialsFile {
        /// The file.
        path: PathBuf,
        /// What went wrong reading it.
        #[source]
        source: std::io::Error,
    },

    /// The nkey seed file could not be read or holds no seed.
    #[error("could not read an nkey seed from {}", path.display())]
    NkeySeedFile {
        /// The file.
        path: PathBuf,
        /// What went wrong reading it.
        #[source]
        source: std::io::Error,
    },

    /// The inbox prefix is not a subject without wildcards.
    #[error("{prefix:?} is not an inbox prefix: give subject tokens without wildcards, such as _INBOX_inventory")]
    InvalidInboxPrefix {
        /// The prefix as given.
        prefix: String,
    },

    /// Both an nkey seed and an nkey seed file were given.
    #[error("give an nkey seed or an nkey seed file, not both")]
    ConflictingNkeySeeds,

    /// The URL is not a NATS server address.
    #[error("{url:?} is not a NATS server URL; write it like nats://127.0.0.1:4222")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What async-nats found wrong with it.
        #[source]
        source: async_nats::ConnectError,
    },

    /// Nothing answered at the URL in time, or the connection broke while it was made.
    #[error(
        "could not reach a NATS server at {url}; check that nats-server {MIN_SERVER_VERSION}+ \
         is running there (`scripts/install-nats-server` installs one) or use another URL"
    )]
    Unreachable {
        /// The URL.
        url: String,
        /// What async-nats saw.
        #[source]
        source: async_nats::ConnectError,
    },

    /// The server refused the credentials.
    #[error(
        "the NATS server at {url} refused the connection's credentials (authorization violation); \
         check the credentials file, nkey seed, token or user and password"
    )]
    NotAuthorized {
        /// The URL.
        url: String,
        /// What async-nats saw.
        #[source]
        source: async_nats::ConnectError,
    },

    /// TLS could not be set up or negotiated.
    #[error(
        "the TLS handshake with the NATS server at {url} failed; check the root certificates \
         (is the server's certificate signed by them?), the client certificate and key (does \
         the server ask for one, and trust its issuer?) and whether the server speaks TLS"
    )]
    Tls {
        /// The URL.
        url: String,
        /// What async-nats saw.
        #[source]
        source: async_nats::ConnectError,
    },

    /// Any other failure to connect.
    #[error("could not connect to the NATS server at {url}")]
    Other {
        /// The URL.
        url: String,
        /// What async-nats saw.
        #[source]
        source: async_nats::ConnectError,
    },

    /// The connection was made but the server never said who it is.
    #[error("the NATS server at {url} sent no INFO message, so its version is unknown")]
    NoServerInfo {
        /// The URL.
        url: String,
    },
}

/// Formats " at URL" for the version errors, or nothing when there is no URL.
fn at_url(url: Option<&str>) -> String {
    url.map(|url| format!(" at {url}")).unwrap_or_default()
}

impl ConnectError {
    /// Names the server's URL in a version error that was found without one.
    fn at(self, server_url: &str) -> Self {
        match self {
            Self::ServerTooOld { found, url: None } => Self::ServerTooOld {
                found,
                url: Some(server_url.to_owned()),
            },
            Self::UnparsableServerVersion {
                reported,
                url: None,
                source,
            } => Self::UnparsableServerVersion {
                reported,
                url: Some(server_url.to_owned()),
                source,
            },
            other => other,
        }
    }
}

/// Parses the version a nats-server reports and refuses one older than [`MIN_SERVER_VERSION`].
///
/// Takes versions as the server's INFO message or `nats-server --version`
/// spell them, with or without a leading `v`: `2.15.1`, `v2.10.0-beta.3`.
///
/// Pre-release versions are compared by their release number, so
/// `2.10.0-beta.3` passes: nats-server builds from its main branch call
/// themselves `2.x.0-dev` and already have that release's features, while
/// semver would rank them below `2.x.0`.
pub fn check_server_version(reported: &str) -> Result<Version, ConnectError> {
    let trimmed = reported.trim();
    let without_prefix = trimmed
        .strip_prefix('v')
        .or_else(|| trimmed.strip_prefix('V'))
        .unwrap_or(trimmed);
    let version = Version::parse(without_prefix).map_err(|source| ConnectError::UnparsableServerVersion {
        reported: reported.to_owned(),
        url: None,
        source,
    })?;
    let release = Version::new(version.major, version.minor, version.patch);
    if release < MIN_SERVER_VERSION {
        return Err(ConnectError::ServerTooOld {
            found: version,
            url: None,
        });
    }
    Ok(version)
}

/// Connects to the NATS server that `config` names and checks that it is new enough.
///
/// The connection attempt is made once and fails after
/// [`ConnectConfig::connect_timeout`]; once connected, async-nats reconnects
/// by itself whenever the connection drops.
pub async fn connect(config: &ConnectConfig) -> Result<async_nats::Client, ConnectError> {
    let options = connect_options(config).await?;
    let client = options
        .connect(server_urls(&config.url))
        .await
        .map_err(|source| classify_connect_error(&config.url, source))?;
    let info = client.try_server_info().ok_or_else(|| ConnectError::NoServerInfo {
        url: config.url.clone(),
    })?;
    match check_server_version(&info.version) {
        Ok(version) => {
            tracing::debug!(
                url = %config.url,
                server_version = %version,
                server_name = %info.server_name,
                "Connected to the NATS server."
            );
            Ok(client)
        }
        Err(error) => {
            // Closing the connection is best effort: the version error is what the caller needs.
            if let Err(drain_error) = client.drain().await {
                tracing::debug!(error = %drain_error, "Could not drain the refused connection.");
            }
            Err(error.at(&config.url))
        }
    }
}

/// The URLs of a seed list such as `nats://a:4222,nats://b:4222`, one URL
/// alone being a list of one.
///
/// async-nats reads a `&str` as a single URL (the comma then fails to parse
/// as a port), so the list is split here; async-nats picks among them and
/// fails over between them, and learns the cluster's other members from the
/// servers it reaches.
fn server_urls(url: &str) -> Vec<&str> {
    let urls: Vec<&str> = url.split(',').map(str::trim).filter(|url| !url.is_empty()).collect();
    if urls.is_empty() {
        // Nothing but commas and blanks: let async-nats call the text itself invalid.
        return vec![url];
    }
    urls
}

/// Turns the configuration into async-nats options, checking that paired fields come in pairs.
async fn connect_options(config: &ConnectConfig) -> Result<async_nats::ConnectOptions, ConnectError> {
    let mut options = match &config.credentials_file {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| ConnectError::CredentialsFile {
                path: path.clone(),
                source,
            })?,
        None => async_nats::ConnectOptions::new(),
    };
    options = options.connection_timeout(config.connect_timeout);
    let base_prefix = config.inbox_prefix.as_deref().unwrap_or(DEFAULT_INBOX_PREFIX);
    if contracts::Subject::parse(base_prefix).is_err() {
        return Err(ConnectError::InvalidInboxPrefix {
            prefix: base_prefix.to_owned(),
        });
    }
    // Unique per connection, so a permission refusal is told to the
    // connection it happened on (`refusals`).
    let inbox_prefix = format!("{base_prefix}.{}", nuid::next());
    let refusals = refusals::Refusals::register(&inbox_prefix, config.name.clone());
    options = options.custom_inbox_prefix(&inbox_prefix).event_callback(move |event| {
        let (refusals, inbox_prefix) = (Arc::clone(&refusals), inbox_prefix.clone());
        async move { on_event(&refusals, &inbox_prefix, event) }
    });
    if let Some(name) = &config.name {
        options = options.name(name);
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    match (&config.nkey_seed, &config.nkey_seed_file) {
        (Some(seed), None) => options = options.nkey(seed.clone()),
        (None, Some(path)) => options = options.nkey(read_nkey_seed(path).await?),
        (Some(_), Some(_)) => return Err(ConnectError::ConflictingNkeySeeds),
        (None, None) => {}
    }
    match (&config.user, &config.password) {
        (Some(user), Some(password)) => {
            options = options.user_and_password(user.clone(), password.clone());
        }
        (Some(_), None) => return Err(ConnectError::IncompleteUserAndPassword { given: "user" }),
        (None, Some(_)) => {
            return Err(ConnectError::IncompleteUserAndPassword { given: "password" });
        }
        (None, None) => {}
    }
    options = options.require_tls(config.tls_required);
    if let Some(path) = &config.root_certificates {
        options = options.add_root_certificates(path.clone());
    }
    match (&config.client_certificate, &config.client_key) {
        (Some(certificate), Some(key)) => {
            options = options.add_client_certificate(certificate.clone(), key.clone());
        }
        (Some(_), None) => {
            return Err(ConnectError::IncompleteClientCertificate { given: "certificate" });
        }
        (None, Some(_)) => return Err(ConnectError::IncompleteClientCertificate { given: "key" }),
        (None, None) => {}
    }
    Ok(options)
}

/// The inbox prefix NATS clients use unless told otherwise.
const DEFAULT_INBOX_PREFIX: &str = "_INBOX";

/// Logs what the connection reports, and keeps the server's permission
/// refusals where the runtime can find them.
fn on_event(refusals: &refusals::Refusals, inbox_prefix: &str, event: async_nats::Event) {
    match event {
        async_nats::Event::ServerError(async_nats::ServerError::Other(text)) => {
            if refusals.record(&text).is_none() {
                tracing::warn!(error = %text, "The NATS server reported an error on the connection.");
            }
        }
        async_nats::Event::ServerError(error) => {
            tracing::warn!(error = %error, "The NATS server reported an error on the connection.");
        }
        async_nats::Event::ClientError(error) => {
            tracing::warn!(error = %error, "The NATS client reported an error on the connection.");
        }
        async_nats::Event::SlowConsumer(subscription) => {
            tracing::warn!(
                subscription,
                "A subscription could not keep up; the server dropped messages for it."
            );
        }
        async_nats::Event::Closed => {
            refusals::Refusals::unregister(inbox_prefix);
            tracing::debug!("The NATS connection closed.");
        }
        other => tracing::debug!(event = %other, "NATS connection event."),
    }
}

/// Reads the nkey seed in `path`: its first line that is not blank, trimmed.
///
/// A file `nk -gen user` wrote holds the seed alone; one with a trailing
/// newline or a public key after it works too.
async fn read_nkey_seed(path: &std::path::Path) -> Result<String, ConnectError> {
    let error = |source| ConnectError::NkeySeedFile {
        path: path.to_owned(),
        source,
    };
    let text = tokio::fs::read_to_string(path).await.map_err(error)?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file is empty",
            ))
        })
}

/// Sorts an async-nats connect error by what the user should do about it.
fn classify_connect_error(url: &str, source: async_nats::ConnectError) -> ConnectError {
    use async_nats::ConnectErrorKind;

    let url = url.to_owned();
    match source.kind() {
        ConnectErrorKind::ServerParse => ConnectError::InvalidUrl { url, source },
        // A refused certificate reaches async-nats as an I/O error of the
        // TLS stream; it is no sign of an unreachable server.
        ConnectErrorKind::Io if is_tls_failure(&source) => ConnectError::Tls { url, source },
        ConnectErrorKind::Dns | ConnectErrorKind::TimedOut | ConnectErrorKind::Io => {
            ConnectError::Unreachable { url, source }
        }
        ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
            ConnectError::NotAuthorized { url, source }
        }
        ConnectErrorKind::Tls => ConnectError::Tls { url, source },
        ConnectErrorKind::MaxReconnects => ConnectError::Other { url, source },
    }
}

/// Whether a rustls error (a certificate refused on either side, an alert
/// from the server) is among the causes of `error`.
///
/// `std::io::Error::source` skips the error it wraps, so an I/O error's own
/// payload is looked at too.
fn is_tls_failure(error: &async_nats::ConnectError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = cause {
        if current.is::<async_nats::rustls::Error>() {
            return true;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<async_nats::rustls::Error>())
        {
            return true;
        }
        cause = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_current_and_minimum_versions() {
        assert_eq!(check_server_version("2.15.1").unwrap(), Version::new(2, 15, 1));
        assert_eq!(check_server_version("2.10.0").unwrap(), Version::new(2, 10, 0));
        assert_eq!(check_server_version("3.0.0").unwrap(), Version::new(3, 0, 0));
    }

    #[test]
    fn accepts_a_leading_v_and_surrounding_whitespace() {
        assert_eq!(check_server_version(" v2.11.4\n").unwrap(), Version::new(2, 11, 4));
    }

    #[test]
    fn accepts_pre_releases_of_a_new_enough_release() {
        let version = check_server_version("v2.10.0-beta.3").unwrap();
        assert_eq!(version, Version::parse("2.10.0-beta.3").unwrap());
        assert!(check_server_version("2.12.0-dev").is_ok());
    }

    #[test]
    fn refuses_debians_2_9_with_a_message_that_says_what_to_do() {
        let error = check_server_version("2.9.10").unwrap_err();
        assert!(
            matches!(&error, ConnectError::ServerTooOld { found, url: None } if *found == Version::new(2, 9, 10)),
            "{error:?}"
        );
        let message = error.to_string();
        for expected in ["2.9.10", "2.10.0 or newer", "Debian", "scripts/install-nats-server"] {
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn refuses_older_versions_and_their_pre_releases() {
        for reported in ["v2.9.25", "2.2.0", "1.4.1", "2.9.99-beta.1"] {
            assert!(
                matches!(check_server_version(reported), Err(ConnectError::ServerTooOld { .. })),
                "{reported} should be refused"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_version() {
        for reported in ["", "2.10", "nats-server", "v"] {
            let error = check_server_version(reported).unwrap_err();
            assert!(
                matches!(&error, ConnectError::UnparsableServerVersion { reported: r, .. } if r == reported),
                "{reported:?}: {error:?}"
            );
            assert!(error.to_string().contains("scripts/install-nats-server"));
        }
    }

    #[test]
    fn version_errors_name_the_url_once_connected() {
        let error = check_server_version("2.9.10").unwrap_err().at("nats://127.0.0.1:4222");
        assert!(
            error
                .to_string()
                .starts_with("nats-server 2.9.10 at nats://127.0.0.1:4222 is too old"),
            "{error}"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = ConnectConfig {
            token: Some("s3cret-token".to_owned()),
            user: Some("alice".to_owned()),
            password: Some("s3cret-password".to_owned()),
            ..ConnectConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("alice"), "{debug}");
    }

    #[test]
    fn default_points_at_the_local_server() {
        let config = ConnectConfig::default();
        assert_eq!(config.url, "nats://127.0.0.1:4222");
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
    }

    #[tokio::test]
    async fn unpaired_user_and_password_are_refused_before_connecting() {
        let config = ConnectConfig {
            user: Some("alice".to_owned()),
            ..ConnectConfig::default()
        };
        let error = connect(&config).await.unwrap_err();
        assert!(
            matches!(error, ConnectError::IncompleteUserAndPassword { given: "user" }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_nkey_seed_and_a_seed_file_together_are_refused_before_connecting() {
        let config = ConnectConfig {
            nkey_seed: Some("SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4".to_owned()),
            nkey_seed_file: Some(PathBuf::from("user.nk")),
            ..ConnectConfig::default()
        };
        let error = connect(&config).await.unwrap_err();
        assert!(matches!(error, ConnectError::ConflictingNkeySeeds), "{error:?}");
    }

    #[tokio::test]
    async fn a_missing_or_empty_nkey_seed_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.nk");
        std::fs::write(&empty, "\n  \n").unwrap();
        for path in [dir.path().join("missing.nk"), empty] {
            let config = ConnectConfig {
                nkey_seed_file: Some(path.clone()),
                ..ConnectConfig::default()
            };
            let error = connect(&config).await.unwrap_err();
            assert!(
                matches!(&error, ConnectError::NkeySeedFile { path: named, .. } if *named == path),
                "{error:?}"
            );
            assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        }
    }

    #[tokio::test]
    async fn the_seed_is_the_first_line_that_is_not_blank() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user.nk");
        std::fs::write(&path, "\n  SUAEXAMPLE  \nUAEXAMPLE\n").unwrap();
        assert_eq!(read_nkey_seed(&path).await.unwrap(), "SUAEXAMPLE");
    }

    #[tokio::test]
    async fn an_unreachable_server_names_the_url() {
        // Port 1 on loopback is privileged and has nothing listening in a test environment.
        let config = ConnectConfig {
            connect_timeout: Duration::from_secs(2),
            ..ConnectConfig::for_url("nats://127.0.0.1:1")
        };
        let error = connect(&config).await.unwrap_err();
        assert!(
            matches!(&error, ConnectError::Unreachable { url, .. } if url == "nats://127.0.0.1:1"),
            "{error:?}"
        );
        assert!(error.to_string().contains("nats://127.0.0.1:1"));
    }

    #[test]
    fn a_seed_list_is_split_at_its_commas() {
        assert_eq!(server_urls("nats://127.0.0.1:4222"), ["nats://127.0.0.1:4222"]);
        assert_eq!(
            server_urls("nats://a:4222, nats://b:4223,,nats://c:4224 "),
            ["nats://a:4222", "nats://b:4223", "nats://c:4224"]
        );
        assert_eq!(server_urls(" , "), [" , "]);
    }

    #[tokio::test]
    async fn a_seed_list_of_unreachable_servers_names_the_list() {
        let list = "nats://127.0.0.1:1,nats://127.0.0.1:2";
        let config = ConnectConfig {
            connect_timeout: Duration::from_secs(2),
            ..ConnectConfig::for_url(list)
        };
        let error = connect(&config).await.unwrap_err();
        // Before the list was split, async-nats read it as one URL and refused it as unparsable.
        assert!(
            matches!(&error, ConnectError::Unreachable { url, .. } if url == list),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_bad_url_in_a_seed_list_is_refused_as_invalid() {
        let config = ConnectConfig::for_url("nats://127.0.0.1:4222,nats://127.0.0.1:notaport");
        let error = connect(&config).await.unwrap_err();
        assert!(matches!(&error, ConnectError::InvalidUrl { .. }), "{error:?}");
    }
}
