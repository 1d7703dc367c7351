//! Benchmarks of message validation: a ~230-byte order against its compiled
//! schema, valid and invalid, with and without JSON parsing.
//!
//! Run with `cargo bench -p contracts --bench validate`. The goal for a valid
//! message is at most 200 ns, parse excluded (parse is its own figure).

// A benchmark whose setup fails has nothing to measure; stopping loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use contracts::{MessageKey, SchemaSet, compile_contract, shop};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;

const VALID_ORDER: &str = r#"{"order_id":"ord-1001","customer_id":"cust-42","mode":"orchestrated","items":[{"sku":"sku-kettle","quantity":1,"unit_price":{"amount_cents":2999,"currency":"EUR"}},{"sku":"sku-mug","quantity":4,"unit_price":{"amount_cents":850,"currency":"EUR"}}]}"#;

const INVALID_ORDER: &str = r#"{"order_id":"ord-1001","customer_id":"cust-42","mode":"orchestrated","items":[{"sku":"sku-kettle","quantity":0,"unit_price":{"amount_cents":2999,"currency":"eur"}},{"sku":"sku-mug","quantity":4,"unit_price":{"amount_cents":850,"currency":"EUR"}}]}"#;

fn validation(c: &mut Criterion) {
    let orders = shop::orders::contract().unwrap_or_else(|err| panic!("the orders contract builds: {err}"));
    let compiled = compile_contract(&orders, &SchemaSet::default()).unwrap_or_else(|problems| panic!("{problems:?}"));
    let key = MessageKey::Request("place".parse().unwrap_or_else(|err| panic!("{err}")));
    let validator = compiled.validators[&key].clone();
    let valid: Value = serde_json::from_str(VALID_ORDER).unwrap_or_else(|err| panic!("{err}"));
    let invalid: Value = serde_json::from_str(INVALID_ORDER).unwrap_or_else(|err| panic!("{err}"));
    assert!(validator.is_valid(&valid));
    assert!(!validator.is_valid(&invalid));
    eprintln!(
        "valid order: {} bytes, invalid order: {} bytes",
        VALID_ORDER.len(),
        INVALID_ORDER.len()
    );

    let mut group = c.benchmark_group("place-order");
    group.bench_function("is_valid/valid", |b| b.iter(|| validator.is_valid(black_box(&valid))));
    group.bench_function("validate/valid", |b| {
        b.iter(|| validator.validate(black_box(&valid)).is_ok())
    });
    group.bench_function("parse", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(VALID_ORDER.as_bytes())).is_ok())
    });
    group.bench_function("parse+validate/valid", |b| {
        b.iter(|| validator.validate_bytes(black_box(VALID_ORDER.as_bytes())).is_ok())
    });
    group.bench_function("is_valid/invalid", |b| {
        b.iter(|| validator.is_valid(black_box(&invalid)))
    });
    group.bench_function("validate/invalid (all errors)", |b| {
        b.iter(|| {
            validator
                .validate(black_box(&invalid))
                .map_err(|failure| failure.details.len())
        })
    });
    group.finish();
}

criterion_group!(benches, validation);
criterion_main!(benches);
