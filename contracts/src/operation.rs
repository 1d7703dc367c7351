//! Typed operations and events: a marker type ties an operation's name to
//! its request and response types (or an event's name to its payload), so a
//! handler or a client cannot pair them wrongly.

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A request-reply operation of a contract, as Rust types.
pub trait OperationType: Send + Sync + 'static {
    /// The operation's name in its contract (`reserve`).
    const NAME: &'static str;
    /// What callers send.
    type Request: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;
    /// What the service answers.
    type Response: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;
}

/// An event of a contract, as a Rust type.
pub trait EventType: Send + Sync + 'static {
    /// The event's name in its contract (`reserved`).
    const NAME: &'static str;
    /// What the event carries.
    type Payload: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;
}

/// Declares marker types for operations and events:
/// `operations! { Place = "place": PlaceOrder => OrderAccepted; }`.
#[macro_export]
macro_rules! operations {
    ($($(#[$doc:meta])* $marker:ident = $name:literal : $request:ty => $response:ty;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $marker;

            impl $crate::operation::OperationType for $marker {
                const NAME: &'static str = $name;
                type Request = $request;
                type Response = $response;
            }
        )*
    };
}

/// Declares marker types for events: `events! { Placed = "placed": OrderPlaced; }`.
#[macro_export]
macro_rules! events {
    ($($(#[$doc:meta])* $marker:ident = $name:literal : $payload:ty;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $marker;

            impl $crate::operation::EventType for $marker {
                const NAME: &'static str = $name;
                type Payload = $payload;
            }
        )*
    };
}
