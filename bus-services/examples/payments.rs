//! A second example service: the shop's payments contract, with charges kept
//! in memory so a refund finds its charge. Like `inventory`, it registers its
//! contract with the registry and heartbeats (it keeps serving when no
//! registry answers). Run a nats-server and `soa registry serve`, then
//! `cargo run -p bus-services --example payments`, and try
//! `soa services`, `soa describe payments` or
//! `soa request shop.payments.v1.refund '{"order_id": "o-1"}'`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bus_services::connection::ConnectConfig;
use bus_services::runtime::{Service, ServiceError, serve};
use contracts::shop::payments::{self, ChargePayment, PaymentReceipt, RefundReceipt};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let charges: Arc<Mutex<HashMap<String, PaymentReceipt>>> = Arc::default();
    let charged = Arc::clone(&charges);
    let service = Service::builder(payments::contract()?)
        .handle::<payments::Charge, _, _>(move |_ctx, request: ChargePayment| {
            let charges = Arc::clone(&charged);
            async move {
                if request.amount.amount_cents > 100_000 {
                    return Err(ServiceError::declared(
                        "PAYMENT_DECLINED",
                        "over the example's limit of 1,000.00",
                    ));
                }
                let receipt = PaymentReceipt {
                    payment_id: format!("pay-{}", request.order_id.0),
                    order_id: request.order_id.clone(),
                    amount: request.amount,
                };
                let mut charges = charges.lock().map_err(ServiceError::internal)?;
                Ok(charges.entry(request.order_id.0).or_insert(receipt).clone())
            }
        })
        .handle::<payments::Refund, _, _>(move |_ctx, request| {
            let charges = Arc::clone(&charges);
            async move {
                let charges = charges.lock().map_err(ServiceError::internal)?;
                let charge = charges
                    .get(&request.order_id.0)
                    .ok_or_else(|| ServiceError::not_found(format!("no charge for order {}", request.order_id.0)))?;
                Ok(RefundReceipt {
                    refund_id: format!("ref-{}", request.order_id.0),
                    order_id: request.order_id,
                    amount: charge.amount.clone(),
                })
            }
        })
        .build()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        }
    });
    println!("payments {} serving; Ctrl-C stops it", service.instance_id());
    // The same environment variables as `soa`'s: a credentials file for a
    // server that asks for one.
    let config = ConnectConfig {
        credentials_file: std::env::var_os("NATS_CREDS").map(Into::into),
        ..ConnectConfig::for_url(url)
    };
    serve(&config, vec![service], shutdown).await?;
    Ok(())
}
