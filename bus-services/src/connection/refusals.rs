//! Permission refusals the NATS server reports on a connection.
//!
//! A server that refuses a publish or a subscription for lack of permission
//! says so asynchronously (`-ERR 'Permissions Violation for Publish to
//! "<subject>"'`) and drops the message; the sender would otherwise see
//! only a timeout. Every connection [`connect`](super::connect) makes logs
//! each refusal with the subject and what to do, and keeps the refusals
//! where the runtime can find them ([`watch`], [`recent`]) to turn a silent
//! timeout into an error that names the subject.
//!
//! Connections are told apart by their inbox prefix, which `connect` makes
//! unique per connection (`<prefix>.<id>`), so a refusal on one connection
//! is never blamed on another in the same process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

/// How long a refusal is remembered for [`recent`].
const REMEMBER_FOR: Duration = Duration::from_secs(60);

/// The most refusals remembered per connection.
const REMEMBER_AT_MOST: usize = 256;

/// What the server refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedAction {
    /// Publishing (or sending a request) to the subject.
    Publish,
    /// Publishing with the subject as the reply subject (the sender may not
    /// receive replies there).
    PublishWithReply,
    /// Subscribing to the subject.
    Subscribe,
}

impl std::fmt::Display for RefusedAction {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Publish => "publish to",
            Self::PublishWithReply => "receive replies on",
            Self::Subscribe => "subscribe to",
        })
    }
}

/// One permission refusal the server reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionRefusal {
    /// What was refused.
    pub action: RefusedAction,
    /// The subject it was refused on.
    pub subject: String,
    /// The refused connection's name (`ConnectConfig::name`), if it has one.
    pub connection: Option<String>,
}

impl std::fmt::Display for PermissionRefusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "the NATS server refused to let connection {} {} {:?} (permissions violation)",
            self.connection
                .as_deref()
                .map_or_else(|| "(unnamed)".to_owned(), |name| format!("{name:?}")),
            self.action,
            self.subject
        )
    }
}

/// Reads the server's permission error text, as async-nats hands it over
/// (without the quotes around it): `Permissions Violation for Publish to
/// "subject"`, `... for Publish with Reply of "subject"`, `... for
/// Subscription to "subject"` (possibly followed by a queue group).
pub fn parse_violation(text: &str) -> Option<(RefusedAction, String)> {
    let rest = text.trim().strip_prefix("Permissions Violation for ")?;
    let (action, rest) = if let Some(rest) = rest.strip_prefix("Publish with Reply of ") {
        (RefusedAction::PublishWithReply, rest)
    } else if let Some(rest) = rest.strip_prefix("Publish to ") {
        (RefusedAction::Publish, rest)
    } else if let Some(rest) = rest.strip_prefix("Subscription to ") {
        (RefusedAction::Subscribe, rest)
    } else {
        return None;
    };
    let rest = rest.trim();
    let subject = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or_default(),
        None => rest.split_whitespace().next().unwrap_or_default(),
    };
    (!subject.is_empty()).then(|| (action, subject.to_owned()))
}

/// The refusals of one connection.
#[derive(Debug)]
pub(super) struct Refusals {
    connection: Option<String>,
    sender: broadcast::Sender<PermissionRefusal>,
    recent: Mutex<VecDeque<(Instant, PermissionRefusal)>>,
}

/// Every live connection's refusals, by the connection's inbox prefix.
static CONNECTIONS: LazyLock<Mutex<HashMap<String, Weak<Refusals>>>> = LazyLock::new(Default::default);

impl Refusals {
    /// A record for a connection whose inboxes start with `inbox_prefix`;
    /// it lives as long as the returned `Arc` (the connection's event callback).
    pub(super) fn register(inbox_prefix: &str, connection: Option<String>) -> Arc<Self> {
        let (sender, _) = broadcast::channel(64);
        let refusals = Arc::new(Self {
            connection,
            sender,
            recent: Mutex::new(VecDeque::new()),
        });
        if let Ok(mut connections) = CONNECTIONS.lock() {
            connections.retain(|_, refusals| refusals.strong_count() > 0);
            connections.insert(inbox_prefix.to_owned(), Arc::downgrade(&refusals));
        }
        refusals
    }

    /// Records what the server said, if it is a permission refusal, and logs it.
    pub(super) fn record(&self, server_error: &str) -> Option<PermissionRefusal> {
        let (action, subject) = parse_violation(server_error)?;
        let refusal = PermissionRefusal {
            action,
            subject,
            connection: self.connection.clone(),
        };
        let advice = match action {
            RefusedAction::Publish => {
                "nothing was sent: grant the subject in this user's publish permissions, or, for a \
                 service, declare the event in its contract's events or the operation in its `calls` \
                 and regenerate its block with `soa contract permissions`"
            }
            RefusedAction::PublishWithReply => {
                "nothing was sent: the connection may not subscribe to its reply subject; connect with \
                 the inbox prefix its permissions name (`_INBOX_<service>`)"
            }
            RefusedAction::Subscribe => {
                "nothing will arrive there: grant the subject in this user's subscribe permissions \
                 (`soa contract permissions` prints a service's)"
            }
        };
        tracing::error!(
            connection = self.connection.as_deref().unwrap_or(""),
            subject = %refusal.subject,
            refused = %action,
            advice,
            "The NATS server refused a publish or a subscription for lack of permission."
        );
        if let Ok(mut recent) = self.recent.lock() {
            let now = Instant::now();
            while recent
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > REMEMBER_FOR)
                || recent.len() >= REMEMBER_AT_MOST
            {
                recent.pop_front();
            }
            recent.push_back((now, refusal.clone()));
        }
        // Nobody listening is fine: the refusal is logged and remembered.
        let _ = self.sender.send(refusal.clone());
        Some(refusal)
    }

    /// Forgets the connection (it closed).
    pub(super) fn unregister(inbox_prefix: &str) {
        if let Ok(mut connections) = CONNECTIONS.lock() {
            connections.remove(inbox_prefix);
        }
    }
}

/// The refusals of `client`'s connection, if [`connect`](super::connect) made it.
fn of(client: &async_nats::Client) -> Option<Arc<Refusals>> {
    let inbox = client.new_inbox();
    let prefix = inbox.rsplit_once('.').map(|(prefix, _)| prefix)?;
    CONNECTIONS.lock().ok()?.get(prefix)?.upgrade()
}

/// Waits for refusals on one connection; made by [`watch`] before sending.
#[derive(Debug)]
pub struct RefusalWatch {
    receiver: Option<broadcast::Receiver<PermissionRefusal>>,
}

/// Starts watching `client`'s connection for permission refusals. Call it
/// before sending, then race [`RefusalWatch::refused`] against the reply.
pub fn watch(client: &async_nats::Client) -> RefusalWatch {
    Watcher::of(client).watch()
}

/// A connection's refusals, looked up once, so that a client sending many
/// messages watches before each without finding its connection again.
#[derive(Debug, Clone, Default)]
pub struct Watcher {
    refusals: Option<Arc<Refusals>>,
}

impl Watcher {
    /// The watcher of `client`'s connection; one that never sees a refusal
    /// for a connection not made by [`connect`](super::connect).
    pub fn of(client: &async_nats::Client) -> Self {
        Self { refusals: of(client) }
    }

    /// Starts watching, as [`watch`] does.
    pub fn watch(&self) -> RefusalWatch {
        RefusalWatch {
            receiver: self.refusals.as_ref().map(|refusals| refusals.sender.subscribe()),
        }
    }
}

impl RefusalWatch {
    /// Resolves when the server refuses `action` on `subject` on this
    /// connection; never, for a connection not made by `connect`.
    pub async fn refused(mut self, action: RefusedAction, subject: &str) -> PermissionRefusal {
        let Some(receiver) = self.receiver.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            match receiver.recv().await {
                Ok(refusal) if refusal.action == action && refusal.subject == subject => return refusal,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
            }
        }
    }
}

/// The latest refusal of `action` on `subject` on `client`'s connection
/// since `since`, if the server reported one: for turning a timeout into
/// the reason it timed out.
pub fn recent(
    client: &async_nats::Client,
    action: RefusedAction,
    subject: &str,
    since: Instant,
) -> Option<PermissionRefusal> {
    let refusals = of(client)?;
    let recent = refusals.recent.lock().ok()?;
    recent
        .iter()
        .rev()
        .take_while(|(at, _)| *at >= since)
        .find(|(_, refusal)| refusal.action == action && refusal.subject == subject)
        .map(|(_, refusal)| refusal.clone())
}

/// Every refusal on `client`'s connection since `since`, oldest first: what
/// a component was refused lately, whatever the subject.
pub fn since(client: &async_nats::Client, since: Instant) -> Vec<PermissionRefusal> {
    let Some(refusals) = of(client) else {
        return Vec::new();
    };
    let Ok(recent) = refusals.recent.lock() else {
        return Vec::new();
    };
    recent
        .iter()
        .filter(|(at, _)| *at >= since)
        .map(|(_, refusal)| refusal.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_permission_errors() {
        assert_eq!(
            parse_violation("Permissions Violation for Publish to \"shop.orders.v1.placed\""),
            Some((RefusedAction::Publish, "shop.orders.v1.placed".to_owned()))
        );
        assert_eq!(
            parse_violation("Permissions Violation for Publish with Reply of \"_INBOX.abc.def\""),
            Some((RefusedAction::PublishWithReply, "_INBOX.abc.def".to_owned()))
        );
        assert_eq!(
            parse_violation("Permissions Violation for Subscription to \"shop.x\" using queue \"q\""),
            Some((RefusedAction::Subscribe, "shop.x".to_owned()))
        );
        assert_eq!(
            parse_violation("Permissions Violation for Subscription to shop.y"),
            Some((RefusedAction::Subscribe, "shop.y".to_owned()))
        );
        for other in [
            "Authorization Violation",
            "Permissions Violation for Publish to \"\"",
            "Maximum Payload Violation",
            "",
        ] {
            assert_eq!(parse_violation(other), None, "{other:?}");
        }
    }

    #[test]
    fn records_and_reports_by_subject() {
        let refusals = Refusals::register("_INBOX_test.unit", Some("tester".to_owned()));
        assert!(refusals.record("Slow Consumer").is_none());
        let refusal = refusals
            .record("Permissions Violation for Publish to \"shop.x.v1.y\"")
            .unwrap();
        assert_eq!(refusal.connection.as_deref(), Some("tester"));
        let text = refusal.to_string();
        assert!(
            text.contains("\"tester\"") && text.contains("publish to \"shop.x.v1.y\""),
            "{text}"
        );
        Refusals::unregister("_INBOX_test.unit");
    }
}
