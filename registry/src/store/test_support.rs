//! What the stores' tests share: sample records, and the promise every
//! [`Store`] keeps about one record, checked the same way on each.

use std::sync::OnceLock;

use contracts::ContractDocument;

use super::{ContractRecord, Inserted, Store, StoreError};

/// The inventory contract at `version`, owned by `owner` (a credential digest).
pub(super) fn sample_record(version: &str, owner: Option<&str>) -> ContractRecord {
    static INVENTORY: OnceLock<ContractDocument> = OnceLock::new();
    let base = INVENTORY.get_or_init(|| {
        let text = include_str!("../../../contracts/catalog/inventory.v1.json");
        ContractDocument::parse("inventory.v1.json", text, &contracts::Limits::default()).unwrap()
    });
    let mut document = base.clone();
    document.version = contracts::Version::parse(version).unwrap();
    ContractRecord {
        digest: document.digest(),
        document,
        registered_at_ms: 1_700_000_000_000,
        owner: owner.map(str::to_owned),
    }
}

/// Asserts that `store` stores `record` once (the same record again is
/// already stored) and refuses other content under its id with a conflict
/// that names the stored digest.
pub(super) async fn assert_stores_once_and_refuses_other_content(store: &dyn Store, record: &ContractRecord) {
    assert_eq!(store.insert(record.clone()).await.unwrap(), Inserted::Created);
    assert_eq!(store.insert(record.clone()).await.unwrap(), Inserted::AlreadyStored);

    let mut other = record.clone();
    other.document.description = "Something else".to_owned();
    other.digest = other.document.digest();
    let err = store.insert(other).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { stored, .. } if *stored == record.digest),
        "{err}"
    );
}
