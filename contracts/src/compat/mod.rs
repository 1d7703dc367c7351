//! Compatibility checking: schema against schema, contract against contract
//! (role-aware), and a producer's events against their consumers.
//!
//! Sans I/O: every function takes documents and returns a report.

mod change;
mod contract_diff;
mod model;
mod schema_diff;

pub use change::{Change, ChangeCode, Effect, Mode, Verdict, verdict};
pub use contract_diff::{
    ConsumerBreak, ContractChange, ContractReport, Role, check_consumers, check_history, check_history_with,
    diff_contracts, policy_mode,
};
pub use schema_diff::{diff_schemas, diff_schemas_at};
