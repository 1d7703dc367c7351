//! A contract-first service in about thirty lines: the shop's inventory
//! contract, three handlers, validated both ways and discoverable over
//! `$SRV.*`. Run a nats-server (`scripts/install-nats-server` installs one),
//! then `cargo run -p bus-services --example inventory`, and try
//! `soa demo` or any NATS client against `shop.inventory.v1.*`. It registers
//! its contract with the registry (`soa registry serve`) and heartbeats, and
//! keeps serving when no registry answers.

use bus_services::connection::ConnectConfig;
use bus_services::runtime::{Service, ServiceError, serve};
use contracts::shop::inventory::{self, Reservation, ReserveStock, StockLevel, StockReleased};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let service = Service::builder(inventory::contract()?)
        .handle::<inventory::Reserve, _, _>(|_ctx, request: ReserveStock| async move {
            if request.items.iter().any(|line| line.quantity > 10) {
                return Err(ServiceError::declared("OUT_OF_STOCK", "we keep 10 of everything"));
            }
            let reservation_id = format!("res-{}", request.order_id.0);
            Ok(Reservation {
                reservation_id,
                order_id: request.order_id,
                items: request.items,
            })
        })
        .handle::<inventory::Release, _, _>(|_ctx, request| async move {
            Ok(StockReleased {
                order_id: request.order_id,
                released: true,
                mode: None,
            })
        })
        .handle::<inventory::Stock, _, _>(|_ctx, request| async move {
            Ok(StockLevel {
                sku: request.sku,
                available: 10,
                reserved: 0,
            })
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
    println!("inventory {} serving; Ctrl-C stops it", service.instance_id());
    // The same environment variables as `soa`'s: a credentials file for a
    // server that asks for one.
    let config = ConnectConfig {
        credentials_file: std::env::var_os("NATS_CREDS").map(Into::into),
        ..ConnectConfig::for_url(url)
    };
    serve(&config, vec![service], shutdown).await?;
    Ok(())
}
