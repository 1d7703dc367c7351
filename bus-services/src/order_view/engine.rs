//! The read model's moving parts: one durable consumer per shop event
//! stream applying each event to the order's record in the KV bucket
//! (compare-and-set on its revision), the in-memory index `get` and `list`
//! answer from, the lag figures, and the rebuild that throws all of it away
//! and reads the streams again from their first message.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, AckKind, consumer};
use contracts::envelope::headers;
use contracts::shop::order_view::{
    ListOrderViews, MAX_PAGE_SIZE, OrderView, OrderViewPage, RebuildReport, StreamProgress, ViewStats,
};
use contracts::shop::{FlowMode, OrderId};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::acks::{ACK_EVERY, AckFloor};
use super::facts::{Event, OrderFacts, Stamp};
use super::lag::LagHistogram;
use super::{OrderViewConfig, OrderViewError, VIEW_BUCKET};
use crate::runtime::unreadable;
use crate::runtime::{PULL_EXPIRY, dead_letter, ensure_event_stream_with_replicas};
use crate::shop::state::{Bucket, is_order_id};

/// The page size of `list` when the request names none.
const DEFAULT_PAGE_SIZE: u32 = 50;

/// How long a consumer waits before starting again after an error.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How soon an unsettled delivery is delivered again.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// Writes of one order that lose a compare-and-set before its events are
/// retried later.
const MAX_WRITES: usize = 50;

/// How long an unsettled order's unsaved facts wait for more before the
/// write that stores them all. An order's events come from several streams
/// over the few hundred milliseconds its flow takes under load; one write
/// then stands for all of them. An order whose flow has settled (its last
/// notification is known) is written at once. Queries see a fact at once;
/// only its storing (and the event's ack) waits.
const WRITE_LINGER: Duration = Duration::from_secs(1);

/// Unsettled deliveries a view consumer may hold: every event waits up to
/// [`WRITE_LINGER`] for its write, so at a few thousand events a second per
/// stream the server's default of 1,000 would stall the consumer.
const MAX_ACK_PENDING: i64 = 20_000;

/// How long stopping waits for the writes under way.
const WRITES_DRAIN: Duration = Duration::from_secs(5);

/// One order in the index: its facts (a superset of what the bucket holds at
/// `revision`, since every write and read is joined into it) and the last
/// revision of its key seen, so a write needs no read first.
#[derive(Debug, Default)]
struct Indexed {
    facts: OrderFacts,
    revision: Option<u64>,
    /// Facts applied here that no write has stored yet.
    unsaved: bool,
}

impl Indexed {
    /// Joins the bucket's value at `revision` into the entry.
    fn join(&mut self, facts: &OrderFacts, revision: u64) {
        self.facts.merge(facts);
        self.revision = Some(self.revision.map_or(revision, |known| known.max(revision)));
    }
}

/// The deliveries one order's coming write settles, and the signal that
/// the write should not wait any longer (the order settled, or the view stops).
#[derive(Default)]
struct Waiting {
    deliveries: Vec<Delivery>,
    now: Arc<Notify>,
}

/// A delivery waiting for its order's write, with its consumer's floor.
struct Delivery {
    floor: Arc<Mutex<AckFloor>>,
    sequence: u64,
    message: jetstream::Message,
}

impl Delivery {
    /// What it tells is stored: its consumer's next flush acks it, with
    /// every delivery before it.
    fn settle(self) {
        lock(&self.floor).settle(self.sequence, self.message);
    }
}

/// One shop event stream the view reads.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The producing service (`orders`, ...).
    pub(crate) service: String,
    /// Its stream, `SOA_EVENTS_<SERVICE>_V1`.
    pub(crate) stream: String,
    /// The view's durable consumer on it.
    pub(crate) durable: String,
    /// Its deliveries not acked yet.
    pub(crate) floor: Arc<Mutex<AckFloor>>,
}

/// What the view counted since it started (or was rebuilt).
#[derive(Debug, Default)]
struct Counters {
    events: u64,
    duplicates: u64,
    dead_letters: u64,
    replayed: u64,
    all: LagHistogram,
    orchestrated: LagHistogram,
    choreographed: LagHistogram,
}

/// The consumers of one generation of the view (a rebuild starts another).
struct Generation {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// Everything the consumers and the handlers share.
pub(crate) struct Engine {
    js: jetstream::Context,
    config: OrderViewConfig,
    sources: Vec<Source>,
    bucket: RwLock<Arc<Bucket>>,
    index: Mutex<BTreeMap<String, Indexed>>,
    /// Orders with a write coming, and the deliveries it settles.
    writes: Mutex<HashMap<String, Waiting>>,
    counters: Mutex<Counters>,
    replaying: AtomicBool,
    generation: tokio::sync::Mutex<Option<Generation>>,
}

impl Engine {
    /// Opens the bucket (creating it when missing), makes sure every shop
    /// stream exists, and loads the index from the bucket.
    pub(crate) async fn open(nats: async_nats::Client, config: OrderViewConfig) -> Result<Arc<Self>, OrderViewError> {
        let js = jetstream::new(nats);
        let mut sources = Vec::new();
        for contract in contracts::shop::contracts()? {
            let stream = ensure_event_stream_with_replicas(&js, &contract, config.replicas).await?;
            sources.push(Source {
                service: contract.service.as_str().to_owned(),
                durable: format!("order-view-{}", contract.service.as_str()),
                stream,
                floor: Arc::default(),
            });
        }
        let bucket = open_bucket(&js, &config).await?;
        let mut index = BTreeMap::new();
        for (key, facts) in bucket.all::<OrderFacts>().await? {
            // The revision is learnt at the first write (which then reads).
            index.insert(
                key,
                Indexed {
                    facts,
                    revision: None,
                    unsaved: false,
                },
            );
        }
        tracing::info!(orders = index.len(), "The order view loaded its bucket.");
        Ok(Arc::new(Self {
            js,
            config,
            sources,
            bucket: RwLock::new(Arc::new(bucket)),
            index: Mutex::new(index),
            writes: Mutex::new(HashMap::new()),
            counters: Mutex::new(Counters::default()),
            replaying: AtomicBool::new(false),
            generation: tokio::sync::Mutex::new(None),
        }))
    }

    /// Starts one consumer per stream (a generation), unless one runs.
    pub(crate) async fn start(self: &Arc<Self>) {
        let mut generation = self.generation.lock().await;
        if generation.is_none() {
            *generation = Some(self.spawn_consumers());
        }
    }

    fn spawn_consumers(self: &Arc<Self>) -> Generation {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for source in self.sources.clone() {
            let (engine, stop) = (Arc::clone(self), stop.clone());
            tasks.spawn(async move { engine.follow(source, stop).await });
        }
        Generation { stop, tasks }
    }

    /// Stops the consumers, each after the events in hand.
    pub(crate) async fn stop(&self) {
        let taken = self.generation.lock().await.take();
        if let Some(generation) = taken {
            stop_generation(generation).await;
        }
        self.writes_done().await;
        for source in &self.sources {
            flush_acks(source).await;
        }
    }

    /// Waits (a while) until no write is coming: the events they settle are
    /// then stored and settled, for the next ack flush. Writes waiting for
    /// more facts go at once.
    async fn writes_done(&self) {
        for waiting in lock(&self.writes).values() {
            waiting.now.notify_one();
        }
        let deadline = Instant::now() + WRITES_DRAIN;
        while !lock(&self.writes).is_empty() {
            if Instant::now() >= deadline {
                tracing::warn!(
                    "Some order view writes were still under way; their events come back after the ack wait."
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Follows one stream until `stop`, starting again after an error.
    async fn follow(self: Arc<Self>, source: Source, stop: CancellationToken) {
        while !stop.is_cancelled() {
            match self.consume(&source, &stop).await {
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(stream = %source.stream, error = %error, "The order view's consumer failed; starting it again.");
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(RETRY_PAUSE) => {}
                    }
                }
            }
        }
    }

    /// One run of a stream's durable consumer, until `stop` or an error.
    async fn consume(self: &Arc<Self>, source: &Source, stop: &CancellationToken) -> Result<(), OrderViewError> {
        let stream = self.js.get_stream(&source.stream).await.map_err(jetstream_error)?;
        let config = consumer::pull::Config {
            durable_name: Some(source.durable.clone()),
            description: Some("soabus order view: every event of the stream, from the first".to_owned()),
            deliver_policy: consumer::DeliverPolicy::All,
            // One ack settles every delivery up to it (see `acks.rs`).
            ack_policy: consumer::AckPolicy::All,
            // A delivery taken and not settled (the view stopped or
            // was killed) comes back this soon; applying twice is harmless.
            ack_wait: ACK_WAIT,
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        };
        // What an earlier run took is delivered again (see `open_consumer`).
        lock(&source.floor).clear();
        let consumer = open_consumer(&self.js, &stream, config).await?;
        let max_in_flight = self.config.max_in_flight.max(1);
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(max_in_flight)
            // A stalled pull stream recovers only after its request expires.
            .expires(PULL_EXPIRY)
            .messages()
            .await
            .map_err(jetstream_error)?;
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut acks = tokio::time::interval(ACK_EVERY);
        acks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break Ok(()),
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                _ = acks.tick() => flush_acks(source).await,
                message = messages.next(), if in_flight.len() < max_in_flight => match message {
                    Some(Ok(message)) => in_flight.push(self.process(source, message)),
                    Some(Err(error)) => {
                        tracing::debug!(stream = %source.stream, error = %error, "The order view's message stream reported an error; it keeps going.");
                    }
                    None => break Err(OrderViewError::JetStream(format!("the consumer {} ended", source.durable))),
                },
            }
        };
        // Finish what was taken, and hand back what was pulled but not
        // started, so it is delivered again at once rather than after the ack wait.
        while in_flight.next().await.is_some() {}
        flush_acks(source).await;
        // At most one batch: a handed-back event may be pulled again at once.
        for _ in 0..max_in_flight {
            let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(20), messages.next()).await else {
                break;
            };
            if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
                tracing::debug!(error = %error, "Could not hand an event back; it comes back after the ack wait.");
            }
        }
        result
    }

    /// Applies one message to the index (queries see it at once) and hands
    /// it to its order's coming write, which settles it once stored (the
    /// consumer's next ack flush then covers it); an unreadable event goes
    /// to the dead letters and is settled.
    async fn process(self: &Arc<Self>, source: &Source, message: jetstream::Message) {
        let stamp = match message.info() {
            Ok(info) => Stamp {
                at_us: u64::try_from(info.published.unix_timestamp_nanos() / 1_000).unwrap_or(0),
                sequence: info.stream_sequence,
            },
            Err(error) => {
                let reason = format!("no JetStream metadata: {error}");
                return self.send_to_dead_letters(source, message, None, &reason).await;
            }
        };
        lock(&source.floor).take(stamp.sequence);
        match self.apply(source, &message, stamp) {
            Ok(Some(Unsaved { order, settled })) => {
                let delivery = Delivery {
                    floor: Arc::clone(&source.floor),
                    sequence: stamp.sequence,
                    message,
                };
                self.store_later(order, delivery, settled);
            }
            Ok(None) => lock(&source.floor).settle(stamp.sequence, message),
            Err(reason) => {
                self.send_to_dead_letters(source, message, Some(stamp.sequence), &reason)
                    .await
            }
        }
    }

    /// Stores an event the view can never apply as a dead letter, then
    /// settles it (its consumer's next ack covers it; a `Term` would ack
    /// every delivery before it too) or, without a `sequence` to settle,
    /// terminates it; naks it when the dead letter cannot be stored.
    async fn send_to_dead_letters(
        &self,
        source: &Source,
        message: jetstream::Message,
        sequence: Option<u64>,
        reason: &str,
    ) {
        tracing::warn!(stream = %source.stream, reason = %reason, "The order view cannot read an event; it goes to the dead letters.");
        let outcome = match dead_letter(&self.js, &message, &source.stream, &source.durable, reason).await {
            Ok(()) => {
                lock(&self.counters).dead_letters += 1;
                match sequence {
                    Some(sequence) => {
                        lock(&source.floor).settle(sequence, message);
                        return;
                    }
                    None => message.ack_with(AckKind::Term).await,
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "Could not store the dead letter; the event will be redelivered.");
                message.ack_with(AckKind::Nak(Some(RETRY_PAUSE))).await
            }
        };
        if let Err(error) = outcome {
            tracing::debug!(error = %error, "Could not acknowledge an event; it will be redelivered.");
        }
    }

    /// Adds the event, stored by JetStream as `stamp` says, to its order's
    /// facts in the index; the order when it has facts not yet stored (the
    /// event must wait for their write), or `None` when everything it tells
    /// is stored already. An error is the reason the event can never be
    /// applied.
    fn apply(&self, source: &Source, message: &jetstream::Message, stamp: Stamp) -> Result<Option<Unsaved>, String> {
        let subject = message.subject.as_str();
        let event_name = message
            .headers
            .as_ref()
            .and_then(|map| map.get(headers::EVENT))
            .map_or_else(
                || subject.rsplit('.').next().unwrap_or_default().to_owned(),
                |value| value.as_str().to_owned(),
            );
        let event = Event::read(&source.service, &event_name, &message.payload).map_err(|error| error.to_string())?;
        let order = event.order_id().0.clone();
        if !is_order_id(&order) {
            return Err(format!("{order:?} can be no order's id"));
        }
        let event_mode = event.mode();
        let (changed, unsaved, settled, mode) = {
            let mut index = lock(&self.index);
            let entry = index.entry(order.clone()).or_default();
            let changed = entry.facts.apply(event, stamp);
            entry.unsaved |= changed;
            (
                changed,
                entry.unsaved,
                entry.facts.settled(),
                entry.facts.mode().or(event_mode),
            )
        };
        let lag_us = now_us().saturating_sub(stamp.at_us);
        let mut counters = lock(&self.counters);
        if !changed {
            counters.duplicates += 1;
        }
        if self.replaying.load(Ordering::Relaxed) {
            counters.replayed += 1;
        } else {
            counters.events += 1;
            counters.all.record(lag_us);
            match mode {
                Some(FlowMode::Orchestrated) => counters.orchestrated.record(lag_us),
                Some(FlowMode::Choreographed) => counters.choreographed.record(lag_us),
                None => {}
            }
        }
        Ok(unsaved.then_some(Unsaved { order, settled }))
    }

    /// Queues `message` for its order's next write, starting the writer
    /// when none is coming; a `settled` order's write goes without waiting
    /// for more. An order has at most one writer: its entry lives from the
    /// writer's start until it finds nothing more to write, so one writer's
    /// success is what settles every event it took.
    fn store_later(self: &Arc<Self>, order: String, delivery: Delivery, settled: bool) {
        let start_writer = {
            let mut writes = lock(&self.writes);
            let (waiting, new) = match writes.entry(order.clone()) {
                std::collections::hash_map::Entry::Occupied(waiting) => (waiting.into_mut(), false),
                std::collections::hash_map::Entry::Vacant(vacant) => (vacant.insert(Waiting::default()), true),
            };
            waiting.deliveries.push(delivery);
            if settled {
                waiting.now.notify_one();
            }
            new.then(|| Arc::clone(&waiting.now))
        };
        if let Some(now) = start_writer {
            let engine = Arc::clone(self);
            tokio::spawn(async move { engine.write_waiting(order, now).await });
        }
    }

    /// Stores the order's facts and settles the events waiting for it, write
    /// after write until none wait. Each write waits [`WRITE_LINGER`] for
    /// more facts, or less when `now` is signalled (the order settled, or
    /// the view stops).
    async fn write_waiting(self: Arc<Self>, order: String, now: Arc<Notify>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(WRITE_LINGER) => {}
                () = now.notified() => {}
            }
            let waiting = {
                let mut writes = lock(&self.writes);
                match writes.get_mut(&order) {
                    Some(waiting) if !waiting.deliveries.is_empty() => std::mem::take(&mut waiting.deliveries),
                    _ => {
                        writes.remove(&order);
                        return;
                    }
                }
            };
            let stored = self.write(&order).await;
            if let Err(reason) = &stored {
                tracing::warn!(order = %order, reason = %reason, "The order view could not store an order; its events come back shortly.");
            }
            for delivery in waiting {
                match &stored {
                    Ok(()) => delivery.settle(),
                    Err(_) => {
                        if let Err(error) = delivery.message.ack_with(AckKind::Nak(Some(RETRY_PAUSE))).await {
                            tracing::debug!(error = %error, "Could not hand an event back; it will be redelivered.");
                        }
                    }
                }
            }
        }
    }

    /// Stores the order's facts as the index holds them, at the index's
    /// revision (one round trip); when someone wrote first, the bucket's
    /// value is read, joined in, and the write tried again.
    async fn write(&self, order: &str) -> Result<(), String> {
        let bucket = Arc::clone(&read_lock(&self.bucket));
        let mark_unsaved = || {
            if let Some(entry) = lock(&self.index).get_mut(order) {
                entry.unsaved = true;
            }
        };
        for _ in 0..MAX_WRITES {
            let (facts, expected) = {
                let mut index = lock(&self.index);
                let Some(entry) = index.get_mut(order).filter(|entry| entry.unsaved) else {
                    return Ok(());
                };
                // Facts applied from now on are unsaved again until the next write.
                entry.unsaved = false;
                (entry.facts.clone(), entry.revision)
            };
            match bucket.put_if(order, &facts, expected).await {
                Ok(Some(revision)) => {
                    self.join(order, &facts, revision);
                    return Ok(());
                }
                Ok(None) => {
                    mark_unsaved();
                    match bucket.read::<OrderFacts>(order).await {
                        Ok(Some((stored, revision))) => self.join(order, &stored, revision),
                        Ok(None) => {}
                        Err(error) => return Err(error.to_string()),
                    }
                }
                Err(error) => {
                    mark_unsaved();
                    return Err(error.to_string());
                }
            }
        }
        mark_unsaved();
        Err(format!(
            "the view of order {order} kept changing under {MAX_WRITES} writes"
        ))
    }

    /// Joins the bucket's value of `order` at `revision` into the index (a
    /// join: writes of one order landing in any order end alike).
    fn join(&self, order: &str, facts: &OrderFacts, revision: u64) {
        lock(&self.index)
            .entry(order.to_owned())
            .or_default()
            .join(facts, revision);
    }

    /// The view of one order.
    pub(crate) fn get(&self, order_id: &OrderId) -> Option<OrderView> {
        lock(&self.index)
            .get(&order_id.0)
            .filter(|entry| entry.facts != OrderFacts::default())
            .map(|entry| entry.facts.view(order_id))
    }

    /// One page of views, by order id after the cursor.
    pub(crate) fn list(&self, request: &ListOrderViews) -> OrderViewPage {
        let limit = request.limit.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let index = lock(&self.index);
        let after = request.cursor.as_ref().map(|cursor| cursor.0.as_str());
        let mut orders = Vec::new();
        let mut more = false;
        let range = match after {
            Some(after) => index.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => index.range::<str, _>(..),
        };
        for (key, entry) in range {
            let facts = &entry.facts;
            if *facts == OrderFacts::default() {
                continue;
            }
            if request.status.is_some_and(|status| facts.status() != status)
                || request.mode.is_some_and(|mode| facts.mode() != Some(mode))
            {
                continue;
            }
            if orders.len() == limit {
                more = true;
                break;
            }
            orders.push(facts.view(&OrderId(key.clone())));
        }
        let next_cursor = if more {
            orders.last().map(|view: &OrderView| view.order_id.clone())
        } else {
            None
        };
        OrderViewPage { orders, next_cursor }
    }

    /// How far each stream is applied.
    pub(crate) async fn progress(&self) -> Result<Vec<StreamProgress>, OrderViewError> {
        let mut progress = Vec::new();
        for source in &self.sources {
            let mut stream = self.js.get_stream(&source.stream).await.map_err(jetstream_error)?;
            let last_sequence = stream.info().await.map_err(jetstream_error)?.state.last_sequence;
            let applied_through = match stream.consumer_info(&source.durable).await {
                Ok(info) => info.ack_floor.stream_sequence,
                // Not created yet (the view is starting or rebuilding): nothing applied.
                Err(_) => 0,
            };
            progress.push(StreamProgress {
                stream: source.stream.clone(),
                last_sequence,
                applied_through,
            });
        }
        Ok(progress)
    }

    /// The figures `stats` answers.
    pub(crate) async fn stats(&self) -> Result<ViewStats, OrderViewError> {
        let streams = self.progress().await?;
        let caught_up = streams
            .iter()
            .all(|stream| stream.applied_through >= stream.last_sequence);
        let orders = u64::try_from(lock(&self.index).len()).unwrap_or(u64::MAX);
        let counters = lock(&self.counters);
        Ok(ViewStats {
            orders,
            events: counters.events,
            duplicates: counters.duplicates,
            dead_letters: counters.dead_letters,
            lag: counters.all.summary(),
            orchestrated: counters.orchestrated.summary(),
            choreographed: counters.choreographed.summary(),
            streams,
            caught_up,
        })
    }

    /// Deletes the bucket and the consumers, creates them again from the
    /// start of the streams, and returns once every stream is applied up to
    /// its last sequence at the time of the call.
    pub(crate) async fn rebuild(self: &Arc<Self>) -> Result<RebuildReport, OrderViewError> {
        let began = Instant::now();
        // One rebuild at a time; the consumers are stopped while it clears.
        let mut generation = self.generation.lock().await;
        let targets = self.progress().await?;
        if let Some(running) = generation.take() {
            stop_generation(running).await;
        }
        // The writes under way belong to the bucket about to go, and the
        // deliveries not acked to the consumers about to go.
        self.writes_done().await;
        for source in &self.sources {
            lock(&source.floor).clear();
        }
        for source in &self.sources {
            let stream = self.js.get_stream(&source.stream).await.map_err(jetstream_error)?;
            if let Err(error) = stream.delete_consumer(&source.durable).await {
                tracing::debug!(consumer = %source.durable, error = %error, "No consumer to delete.");
            }
        }
        if let Err(error) = self.js.delete_key_value(VIEW_BUCKET).await {
            tracing::debug!(error = %error, "No view bucket to delete.");
        }
        let bucket = open_bucket(&self.js, &self.config).await?;
        *write_lock(&self.bucket) = Arc::new(bucket);
        lock(&self.index).clear();
        *lock(&self.counters) = Counters::default();
        self.replaying.store(true, Ordering::Relaxed);
        *generation = Some(self.spawn_consumers());
        drop(generation);
        let caught_up = self.wait_for(&targets).await;
        self.replaying.store(false, Ordering::Relaxed);
        let streams = caught_up?;
        let orders = u64::try_from(lock(&self.index).len()).unwrap_or(u64::MAX);
        let events = lock(&self.counters).replayed;
        tracing::info!(orders, events, "The order view was rebuilt from the streams.");
        Ok(RebuildReport {
            orders,
            events,
            took_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            streams,
        })
    }

    /// Waits until each stream is applied up to `targets`' last sequence.
    async fn wait_for(&self, targets: &[StreamProgress]) -> Result<Vec<StreamProgress>, OrderViewError> {
        let deadline = Instant::now() + self.config.rebuild_timeout;
        loop {
            let now = self.progress().await?;
            let done = targets.iter().all(|target| {
                now.iter()
                    .any(|stream| stream.stream == target.stream && stream.applied_through >= target.last_sequence)
            });
            if done {
                return Ok(targets
                    .iter()
                    .map(|target| StreamProgress {
                        applied_through: now
                            .iter()
                            .find(|stream| stream.stream == target.stream)
                            .map_or(0, |stream| stream.applied_through),
                        ..target.clone()
                    })
                    .collect());
            }
            if Instant::now() > deadline {
                return Err(OrderViewError::NotCaughtUp {
                    timeout: self.config.rebuild_timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An event whose fact is not stored yet: its order, and whether the
/// order's flow has settled (so its write need not wait for more).
struct Unsaved {
    order: String,
    settled: bool,
}

/// Opens (creating when missing) a view consumer as `wanted` says, with
/// nothing delivered and not acked.
///
/// One ack settles every delivery up to it, so deliveries an earlier run
/// took and did not settle must not wait on the server for their
/// redelivery: this run's first ack would cover them unseen. Such a
/// consumer is made again from its ack floor, and so is one made by an
/// earlier view that acked each event (the server cannot change an ack
/// policy). What was not acked is delivered again; applying twice is harmless.
async fn open_consumer(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    wanted: consumer::pull::Config,
) -> Result<consumer::PullConsumer, OrderViewError> {
    let durable = wanted.durable_name.clone().unwrap_or_default();
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(&durable, wanted.clone())
        .await
        .map_err(jetstream_error)?;
    let info = consumer.cached_info();
    // What was taken and not acked comes again: an event async-nats cannot
    // read among it would stop the view again.
    let window = unreadable::Window {
        stream: &stream.cached_info().config.name,
        filter: ">",
        durable: &durable,
    };
    unreadable::set_aside_or_warn(js, &window, info).await;
    let floor = info.ack_floor.stream_sequence;
    let unsettled = info.num_ack_pending > 0 || info.delivered.stream_sequence > floor;
    if info.config.ack_policy == wanted.ack_policy && !unsettled {
        return Ok(raise_ack_pending(stream, consumer, wanted).await);
    }
    tracing::info!(consumer = %durable, acked_through = floor, "Making the order view's consumer again from what it acked.");
    stream.delete_consumer(&durable).await.map_err(jetstream_error)?;
    let deliver_policy = if floor == 0 {
        consumer::DeliverPolicy::All
    } else {
        consumer::DeliverPolicy::ByStartSequence {
            start_sequence: floor.saturating_add(1),
        }
    };
    stream
        .get_or_create_consumer(
            &durable,
            consumer::pull::Config {
                deliver_policy,
                ..wanted
            },
        )
        .await
        .map_err(jetstream_error)
}

/// Acks the consumer's deliveries settled so far (one ack stands for all).
async fn flush_acks(source: &Source) {
    let due = lock(&source.floor).take_due();
    if let Some(message) = due
        && let Err(error) = message.ack().await
    {
        tracing::debug!(consumer = %source.durable, error = %error, "Could not acknowledge the view's events; they will be redelivered.");
    }
}

/// Raises the ack-pending limit of a view consumer made before the limit was
/// set (the server's default is 1,000); a consumer the server will not
/// change is used as it is, at the cost of pauses under heavy load.
async fn raise_ack_pending(
    stream: &jetstream::stream::Stream,
    consumer: consumer::PullConsumer,
    wanted: consumer::pull::Config,
) -> consumer::PullConsumer {
    if consumer.cached_info().config.max_ack_pending >= wanted.max_ack_pending {
        return consumer;
    }
    match stream.update_consumer(wanted).await {
        Ok(updated) => updated,
        Err(error) => {
            tracing::warn!(
                error = %error,
                "Could not raise the order view consumer's ack-pending limit; it keeps the one it has."
            );
            consumer
        }
    }
}

async fn stop_generation(mut generation: Generation) {
    generation.stop.cancel();
    while let Some(joined) = generation.tasks.join_next().await {
        if let Err(error) = joined {
            tracing::error!(error = %error, "An order view consumer task failed.");
        }
    }
}

async fn open_bucket(js: &jetstream::Context, config: &OrderViewConfig) -> Result<Bucket, OrderViewError> {
    Ok(Bucket::open(
        js,
        VIEW_BUCKET,
        "soabus order view: one order per key, its facts as the events told them",
        config.replicas,
    )
    .await?)
}

fn jetstream_error(error: impl std::fmt::Display) -> OrderViewError {
    OrderViewError::JetStream(error.to_string())
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
}

/// A lock that a panicked holder left poisoned still guards plain data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
