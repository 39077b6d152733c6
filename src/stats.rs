//! Recent figures for `GET /api/v1/stats`: intake outcomes and ack latency, delivery outcomes
//! and end-to-end latency, over the last 24 hours, in this process.
//!
//! Much of this is not in the database (a duplicate stores no event; latencies are not kept), so
//! the recorder keeps its own small time series: one slot per 10 seconds, each with counts per
//! outcome and fixed log-scale latency histograms from which percentiles are read. It is fed by
//! `metrics.rs` (the same calls that record the Prometheus metrics), so its figures are this
//! node's. Nodes sharing a database see each other through it: each writes its recent slots
//! there (`export`, as JSON: plain lists, so a node that knows more outcomes or buckets still
//! reads what it knows), and a snapshot adds the other nodes' slots in (`snapshot_with`). It
//! owns the outcome words it counts (`IntakeOutcome`, `DeliveryOutcome`) and this process's
//! node id, and imports nothing but the clock.

use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{UnixMillis, now_millis};
use crate::domain::delivery_outcome::DeliveryOutcome;

/// One slot covers this many milliseconds.
pub const SLOT_MILLIS: i64 = 10_000;
/// How far back the recorder remembers, and the longest window it answers for.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The most points a window's intake series has (for a sparkline).
const SERIES_POINTS: i64 = 30;

/// Latency histograms have buckets growing by √2 from 0.1 ms: bucket `i` holds latencies below
/// `0.1 ms · √2^(i+1)`. 56 buckets reach about 6 hours; slower ones land in the last bucket.
/// A percentile is reported as its bucket's geometric middle, within ±19% of the truth.
const LATENCY_BUCKETS: usize = 56;
const FIRST_BOUND_MS: f64 = 0.1;

#[derive(Clone)]
struct Histogram {
    counts: [u32; LATENCY_BUCKETS],
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: [0; LATENCY_BUCKETS],
        }
    }

    fn record(&mut self, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        let index = if ms < FIRST_BOUND_MS {
            0
        } else {
            // log base √2 of (ms / first bound).
            ((ms / FIRST_BOUND_MS).log2() * 2.0).floor() as usize
        };
        let bucket = &mut self.counts[index.min(LATENCY_BUCKETS - 1)];
        *bucket = bucket.saturating_add(1);
    }

    fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|c| u64::from(*c)).sum()
    }

    /// The latency (ms) below which a fraction `q` of the recorded ones fall; None when empty.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (index, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                return Some(bucket_middle_ms(index));
            }
        }
        None
    }

    fn percentiles(&self, requested: Option<f64>) -> Percentiles {
        Percentiles {
            count: self.total(),
            p50_ms: self.quantile(0.50),
            p95_ms: self.quantile(0.95),
            p99_ms: self.quantile(0.99),
            requested: requested.map(|p| (p, self.quantile(p / 100.0))),
        }
    }
}

fn bucket_middle_ms(index: usize) -> f64 {
    if index == 0 {
        return FIRST_BOUND_MS * std::f64::consts::SQRT_2 / 2.0;
    }
    // Between √2^index and √2^(index+1) times the first bound: the geometric middle.
    FIRST_BOUND_MS * 2f64.powf((index as f64 + 0.5) / 2.0)
}

/// How an intake request ended; the `outcome` label of `oncehook_intake_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntakeOutcome {
    Accepted,
    Duplicate,
    Conflict,
    InvalidSignature,
    InvalidBody,
    RateLimited,
    TooLarge,
    Unavailable,
    /// A provider's URL check (Slack, Zoom, Meta), answered at once and not stored.
    Handshake,
}

impl IntakeOutcome {
    pub const ALL: [IntakeOutcome; 9] = [
        IntakeOutcome::Accepted,
        IntakeOutcome::Duplicate,
        IntakeOutcome::Conflict,
        IntakeOutcome::InvalidSignature,
        IntakeOutcome::InvalidBody,
        IntakeOutcome::RateLimited,
        IntakeOutcome::TooLarge,
        IntakeOutcome::Unavailable,
        IntakeOutcome::Handshake,
    ];

    /// The outcome's position in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IntakeOutcome::Accepted => "accepted",
            IntakeOutcome::Duplicate => "duplicate",
            IntakeOutcome::Conflict => "conflict",
            IntakeOutcome::InvalidSignature => "invalid_signature",
            IntakeOutcome::InvalidBody => "invalid_body",
            IntakeOutcome::RateLimited => "rate_limited",
            IntakeOutcome::TooLarge => "too_large",
            IntakeOutcome::Unavailable => "unavailable",
            IntakeOutcome::Handshake => "handshake",
        }
    }
}

/// Intake requests per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeCounts([u64; IntakeOutcome::ALL.len()]);

impl IntakeCounts {
    fn add(&mut self, other: &IntakeCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine += theirs;
        }
    }

    pub fn count(&self, outcome: IntakeOutcome) -> u64 {
        self.0[outcome.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// (outcome, requests) in `IntakeOutcome::ALL` order.
    pub fn iter(&self) -> impl Iterator<Item = (IntakeOutcome, u64)> + '_ {
        IntakeOutcome::ALL.iter().map(|o| (*o, self.count(*o)))
    }

    /// Duplicates (and conflicts) among the requests that reached the dedupe step.
    pub fn dedupe_hit_rate(&self) -> Option<f64> {
        let repeats = self.count(IntakeOutcome::Duplicate) + self.count(IntakeOutcome::Conflict);
        let reached = repeats + self.count(IntakeOutcome::Accepted);
        (reached > 0).then(|| repeats as f64 / reached as f64)
    }
}

#[derive(Clone)]
struct Slot {
    /// `time / SLOT_MILLIS`.
    index: i64,
    intake: IntakeCounts,
    /// The same per source; sources are few (they come from the config), so a list will do.
    by_source: Vec<(Box<str>, IntakeCounts)>,
    ack: Histogram,
    /// Attempts per `DeliveryOutcome`, by its index.
    deliveries: [u64; DeliveryOutcome::ALL.len()],
    end_to_end: Histogram,
    /// Replayed deliveries that ended, per `DeliveryOutcome` (delivered or dead).
    replays: [u64; DeliveryOutcome::ALL.len()],
}

/// A slot as it is stored for the other nodes.
#[derive(Serialize, Deserialize)]
struct SlotRecord {
    index: i64,
    intake: Vec<u64>,
    by_source: Vec<(String, Vec<u64>)>,
    ack: Vec<u32>,
    deliveries: Vec<u64>,
    end_to_end: Vec<u32>,
    replays: Vec<u64>,
}

/// Copies what fits: a record from a node that knows more (or fewer) slots of a kind.
fn fill<T: Copy>(into: &mut [T], from: &[T]) {
    for (mine, theirs) in into.iter_mut().zip(from) {
        *mine = *theirs;
    }
}

impl Slot {
    fn to_record(&self) -> SlotRecord {
        SlotRecord {
            index: self.index,
            intake: self.intake.0.to_vec(),
            by_source: self
                .by_source
                .iter()
                .map(|(source, counts)| (source.to_string(), counts.0.to_vec()))
                .collect(),
            ack: self.ack.counts.to_vec(),
            deliveries: self.deliveries.to_vec(),
            end_to_end: self.end_to_end.counts.to_vec(),
            replays: self.replays.to_vec(),
        }
    }

    fn from_record(record: &SlotRecord) -> Slot {
        let mut slot = Slot::new(record.index);
        fill(&mut slot.intake.0, &record.intake);
        for (source, counts) in &record.by_source {
            let mut intake = IntakeCounts::default();
            fill(&mut intake.0, counts);
            slot.by_source.push((source.as_str().into(), intake));
        }
        fill(&mut slot.ack.counts, &record.ack);
        fill(&mut slot.deliveries, &record.deliveries);
        fill(&mut slot.end_to_end.counts, &record.end_to_end);
        fill(&mut slot.replays, &record.replays);
        slot
    }

    fn new(index: i64) -> Slot {
        Slot {
            index,
            intake: IntakeCounts::default(),
            by_source: Vec::new(),
            ack: Histogram::new(),
            deliveries: [0; DeliveryOutcome::ALL.len()],
            end_to_end: Histogram::new(),
            replays: [0; DeliveryOutcome::ALL.len()],
        }
    }
}

/// p50/p95/p99 in milliseconds over `count` samples (None when there were none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The percentile asked for (from 0 to 100, e.g. 99.9) and its latency in milliseconds.
    pub requested: Option<(f64, Option<f64>)>,
}

/// The recorder's figures over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    pub window: Duration,
    /// The part of the window this process has been recording (it may have started later).
    pub covered: Duration,
    /// Requests per intake outcome, over every source and per source.
    pub intake: IntakeCounts,
    pub intake_by_source: std::collections::BTreeMap<String, IntakeCounts>,
    pub ack_latency: Percentiles,
    pub delivered: u64,
    pub retried: u64,
    pub dead: u64,
    pub end_to_end: Percentiles,
    /// Replayed deliveries that ended delivered, and dead.
    pub replays_delivered: u64,
    pub replays_dead: u64,
    /// Intake requests per `series_step`, oldest first, covering the window.
    pub intake_series: Vec<u64>,
    /// The same per intake outcome, in `IntakeOutcome::ALL` order.
    pub intake_series_by_outcome: Vec<(IntakeOutcome, Vec<u64>)>,
    /// Ack latency p95 (ms) per `series_step`; None where there were no requests.
    pub ack_p95_series: Vec<Option<f64>>,
    /// End-to-end latency p95 (ms) per `series_step`; None where nothing was delivered.
    pub end_to_end_p95_series: Vec<Option<f64>>,
    pub series_step: Duration,
}

impl StatsSnapshot {
    pub fn intake_total(&self) -> u64 {
        self.intake.total()
    }

    /// Requests per second over the covered part of the window.
    pub fn intake_rate(&self) -> f64 {
        self.intake_total() as f64 / self.covered.as_secs_f64().max(1.0)
    }
}

pub struct StatsRecorder {
    started_at: UnixMillis,
    slots: Mutex<VecDeque<Slot>>,
}

impl StatsRecorder {
    pub fn new(started_at: UnixMillis) -> StatsRecorder {
        StatsRecorder {
            started_at,
            slots: Mutex::new(VecDeque::new()),
        }
    }

    pub fn record_intake(
        &self,
        now: UnixMillis,
        source: &str,
        outcome: IntakeOutcome,
        latency: Duration,
    ) {
        self.with_slot(now, |slot| {
            slot.intake.0[outcome.index()] += 1;
            match slot
                .by_source
                .iter_mut()
                .find(|(name, _)| &**name == source)
            {
                Some((_, counts)) => counts.0[outcome.index()] += 1,
                None => {
                    let mut counts = IntakeCounts::default();
                    counts.0[outcome.index()] = 1;
                    slot.by_source.push((Box::from(source), counts));
                }
            }
            slot.ack.record(latency);
        });
    }

    pub fn record_delivery(&self, now: UnixMillis, outcome: DeliveryOutcome) {
        self.with_slot(now, |slot| slot.deliveries[outcome.index()] += 1);
    }

    pub fn record_replay_delivery(&self, now: UnixMillis, outcome: DeliveryOutcome) {
        self.with_slot(now, |slot| slot.replays[outcome.index()] += 1);
    }

    pub fn record_end_to_end(&self, now: UnixMillis, latency: Duration) {
        self.with_slot(now, |slot| slot.end_to_end.record(latency));
    }

    fn with_slot(&self, now: UnixMillis, update: impl FnOnce(&mut Slot)) {
        let index = now.div_euclid(SLOT_MILLIS);
        let oldest_kept = index - slots_in(MAX_WINDOW);
        // A poisoned lock only means another recording panicked; the counts are still usable.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        while slots.front().is_some_and(|s| s.index <= oldest_kept) {
            slots.pop_front();
        }
        // Recordings arrive in time order but for a few milliseconds of skew between threads,
        // so the slot is nearly always the last one.
        let position = match slots.back() {
            Some(last) if last.index == index => slots.len() - 1,
            Some(last) if last.index < index => {
                slots.push_back(Slot::new(index));
                slots.len() - 1
            }
            None => {
                slots.push_back(Slot::new(index));
                0
            }
            Some(_) => match slots.binary_search_by_key(&index, |s| s.index) {
                Ok(position) => position,
                Err(position) => {
                    slots.insert(position, Slot::new(index));
                    position
                }
            },
        };
        if let Some(slot) = slots.get_mut(position) {
            update(slot);
        }
    }

    /// This node's slots from index `first` on, as the other nodes read them: `(index, JSON)`.
    pub fn export(&self, first: i64) -> Vec<(i64, Vec<u8>)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .filter(|slot| slot.index >= first)
            .filter_map(|slot| Some((slot.index, serde_json::to_vec(&slot.to_record()).ok()?)))
            .collect()
    }

    /// The figures of the last `window` (at most `MAX_WINDOW`), as of `now`; with `percentile`
    /// (above 0, at most 100), the latencies at that percentile too.
    pub fn snapshot(
        &self,
        now: UnixMillis,
        window: Duration,
        percentile: Option<f64>,
    ) -> StatsSnapshot {
        self.snapshot_with(now, window, percentile, &[])
    }

    /// Like `snapshot`, with other nodes' slots (as `export` wrote them) added in. A slot that
    /// does not read is left out.
    pub fn snapshot_with(
        &self,
        now: UnixMillis,
        window: Duration,
        percentile: Option<f64>,
        others: &[Vec<u8>],
    ) -> StatsSnapshot {
        let others: Vec<Slot> = others
            .iter()
            .filter_map(|bytes| serde_json::from_slice::<SlotRecord>(bytes).ok())
            .map(|record| Slot::from_record(&record))
            .collect();
        let window = window
            .min(MAX_WINDOW)
            .max(Duration::from_millis(SLOT_MILLIS as u64));
        let window_slots = slots_in(window);
        let last = now.div_euclid(SLOT_MILLIS);
        let first = last - window_slots + 1;
        let step = ((window_slots + SERIES_POINTS - 1) / SERIES_POINTS).max(1);
        let points = (window_slots + step - 1) / step;

        let mut intake = IntakeCounts::default();
        let mut by_source = std::collections::BTreeMap::<String, IntakeCounts>::new();
        let mut ack = Histogram::new();
        let mut deliveries = [0u64; DeliveryOutcome::ALL.len()];
        let mut end_to_end = Histogram::new();
        let mut replays = [0u64; DeliveryOutcome::ALL.len()];
        let points = usize::try_from(points).unwrap_or(0);
        let mut series = vec![IntakeCounts::default(); points];
        let mut ack_series = vec![Histogram::new(); points];
        let mut end_to_end_series = vec![Histogram::new(); points];
        {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            for slot in slots
                .iter()
                .chain(others.iter())
                .filter(|s| s.index >= first && s.index <= last)
            {
                intake.add(&slot.intake);
                for (source, counts) in &slot.by_source {
                    by_source.entry(source.to_string()).or_default().add(counts);
                }
                ack.add(&slot.ack);
                for (total, count) in deliveries.iter_mut().zip(slot.deliveries.iter()) {
                    *total += count;
                }
                end_to_end.add(&slot.end_to_end);
                for (total, count) in replays.iter_mut().zip(slot.replays.iter()) {
                    *total += count;
                }
                let point = usize::try_from((slot.index - first) / step).unwrap_or(0);
                if point < points {
                    series[point].add(&slot.intake);
                    ack_series[point].add(&slot.ack);
                    end_to_end_series[point].add(&slot.end_to_end);
                }
            }
        }
        let recording_for =
            Duration::from_millis(now.saturating_sub(self.started_at).max(0) as u64);
        StatsSnapshot {
            window,
            covered: window.min(recording_for),
            intake,
            intake_by_source: by_source,
            ack_latency: ack.percentiles(percentile),
            delivered: deliveries[DeliveryOutcome::Delivered.index()],
            retried: deliveries[DeliveryOutcome::Retry.index()],
            dead: deliveries[DeliveryOutcome::Dead.index()],
            end_to_end: end_to_end.percentiles(percentile),
            replays_delivered: replays[DeliveryOutcome::Delivered.index()],
            replays_dead: replays[DeliveryOutcome::Dead.index()],
            intake_series: series.iter().map(IntakeCounts::total).collect(),
            intake_series_by_outcome: IntakeOutcome::ALL
                .iter()
                .map(|outcome| (*outcome, series.iter().map(|c| c.count(*outcome)).collect()))
                .collect(),
            ack_p95_series: ack_series.iter().map(|h| h.quantile(0.95)).collect(),
            end_to_end_p95_series: end_to_end_series.iter().map(|h| h.quantile(0.95)).collect(),
            series_step: Duration::from_millis((step * SLOT_MILLIS) as u64),
        }
    }
}

fn slots_in(window: Duration) -> i64 {
    let millis = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    ((millis + SLOT_MILLIS - 1) / SLOT_MILLIS).max(1)
}

static RECORDER: LazyLock<StatsRecorder> = LazyLock::new(|| StatsRecorder::new(now_millis()));
static NODE_ID: LazyLock<String> = LazyLock::new(|| uuid::Uuid::now_v7().to_string());

/// This process's id among the nodes sharing a store, for its stored slots.
pub fn node_id() -> &'static str {
    &NODE_ID
}

/// The slot index of `at`.
pub fn slot_index(at: UnixMillis) -> i64 {
    at.div_euclid(SLOT_MILLIS)
}

/// The first slot index of a window ending at `now` (as `snapshot` counts it).
pub fn first_slot(now: UnixMillis, window: Duration) -> i64 {
    let window = window
        .min(MAX_WINDOW)
        .max(Duration::from_millis(SLOT_MILLIS as u64));
    slot_index(now) - slots_in(window) + 1
}

/// This process's recorder (fed by `metrics.rs`).
pub fn global() -> &'static StatsRecorder {
    &RECORDER
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixMillis = 1_800_000_000_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn counts_outcomes_and_rates_within_the_window() {
        let recorder = StatsRecorder::new(T0 - 3_600_000);
        for _ in 0..30 {
            recorder.record_intake(T0, "stripe", IntakeOutcome::Accepted, ms(2));
        }
        for _ in 0..10 {
            recorder.record_intake(T0 + 1_000, "forms", IntakeOutcome::Duplicate, ms(1));
        }
        recorder.record_intake(T0 + 2_000, "forms", IntakeOutcome::InvalidSignature, ms(1));
        // Outside a 15-minute window as of T0 + 60s:
        recorder.record_intake(T0 - 1_200_000, "stripe", IntakeOutcome::Accepted, ms(1));

        let now = T0 + 60_000;
        let snapshot = recorder.snapshot(now, Duration::from_secs(900), None);
        assert_eq!(snapshot.intake.count(IntakeOutcome::Accepted), 30);
        assert_eq!(snapshot.intake.count(IntakeOutcome::Duplicate), 10);
        assert_eq!(snapshot.intake_total(), 41);
        assert_eq!(snapshot.intake.dedupe_hit_rate(), Some(0.25));
        let stripe = snapshot.intake_by_source["stripe"];
        let forms = snapshot.intake_by_source["forms"];
        assert_eq!((stripe.total(), stripe.dedupe_hit_rate()), (30, Some(0.0)));
        assert_eq!((forms.total(), forms.dedupe_hit_rate()), (11, Some(1.0)));
        assert!((snapshot.intake_rate() - 41.0 / 900.0).abs() < 1e-9);
        assert_eq!(snapshot.intake_series.len(), 30);
        assert_eq!(snapshot.series_step, Duration::from_secs(30));
        assert_eq!(snapshot.intake_series.iter().sum::<u64>(), 41);
        assert_eq!(snapshot.ack_latency.count, 41);
        let by_outcome = |outcome: IntakeOutcome| {
            snapshot
                .intake_series_by_outcome
                .iter()
                .find(|(o, _)| *o == outcome)
                .map(|(_, counts)| counts.clone())
                .expect("every outcome has a series")
        };
        let accepted = by_outcome(IntakeOutcome::Accepted);
        assert_eq!(accepted.len(), 30);
        assert_eq!(accepted.iter().sum::<u64>(), 30);
        assert_eq!(by_outcome(IntakeOutcome::Duplicate).iter().sum::<u64>(), 10);
        assert_eq!(by_outcome(IntakeOutcome::TooLarge).iter().sum::<u64>(), 0);
        // T0 is 60s (two 30-second points) before the end of the window.
        assert_eq!(accepted[27], 30, "{accepted:?}");
        assert_eq!(snapshot.ack_p95_series.len(), 30);
        assert!(snapshot.ack_p95_series[27].is_some());
        assert_eq!(snapshot.ack_p95_series[0], None);
        assert!(snapshot.end_to_end_p95_series.iter().all(Option::is_none));

        let day = recorder.snapshot(now, Duration::from_secs(48 * 3600), None);
        assert_eq!(day.window, MAX_WINDOW, "windows are capped at 24h");
        assert_eq!(day.intake_total(), 42);
        assert_eq!(
            day.covered,
            Duration::from_secs(3660),
            "recording for an hour"
        );
    }

    #[test]
    fn percentiles_come_from_log_buckets() {
        let recorder = StatsRecorder::new(T0);
        for n in 1..=100u64 {
            recorder.record_intake(T0, "stripe", IntakeOutcome::Accepted, ms(n));
            recorder.record_end_to_end(T0, ms(n * 10));
        }
        let snapshot = recorder.snapshot(T0 + 1, Duration::from_secs(60), Some(99.9));
        let check = |actual: Option<f64>, truth: f64| {
            let actual = actual.expect("a value");
            assert!(
                actual > truth * 0.75 && actual < truth * 1.35,
                "{actual} is not near {truth}"
            );
        };
        check(snapshot.ack_latency.p50_ms, 50.0);
        check(snapshot.ack_latency.p95_ms, 95.0);
        check(snapshot.ack_latency.p99_ms, 99.0);
        check(snapshot.end_to_end.p50_ms, 500.0);
        let (p, at) = snapshot.ack_latency.requested.expect("asked for");
        assert_eq!(p, 99.9);
        check(at, 100.0);
        check(snapshot.end_to_end.requested.and_then(|(_, at)| at), 1000.0);
        let last = snapshot.end_to_end_p95_series.last().copied().flatten();
        check(last, 950.0);
        assert_eq!(snapshot.end_to_end.count, 100);
        let empty = StatsRecorder::new(T0).snapshot(T0, Duration::from_secs(60), Some(99.9));
        assert_eq!(empty.ack_latency.p50_ms, None);
        assert_eq!(empty.ack_latency.requested, Some((99.9, None)));
        assert_eq!(empty.intake.dedupe_hit_rate(), None);
        assert!(empty.intake_by_source.is_empty());
    }

    #[test]
    fn forgets_after_a_day_and_tolerates_late_recordings() {
        let recorder = StatsRecorder::new(T0);
        recorder.record_delivery(T0, DeliveryOutcome::Dead);
        recorder.record_delivery(T0 + 20_000, DeliveryOutcome::Delivered);
        // A few milliseconds late, into an earlier slot than the newest.
        recorder.record_delivery(T0 + 10_000, DeliveryOutcome::Retry);
        let snapshot = recorder.snapshot(T0 + 30_000, Duration::from_secs(60), None);
        assert_eq!(
            (snapshot.delivered, snapshot.retried, snapshot.dead),
            (1, 1, 1)
        );
        recorder.record_replay_delivery(T0 + 20_000, DeliveryOutcome::Delivered);
        recorder.record_replay_delivery(T0 + 20_000, DeliveryOutcome::Delivered);
        recorder.record_replay_delivery(T0 + 20_000, DeliveryOutcome::Dead);
        let snapshot = recorder.snapshot(T0 + 30_000, Duration::from_secs(60), None);
        assert_eq!((snapshot.replays_delivered, snapshot.replays_dead), (2, 1));
        let day_later = T0 + 24 * 3_600_000 + 30_000;
        recorder.record_delivery(day_later, DeliveryOutcome::Delivered);
        let snapshot = recorder.snapshot(day_later, MAX_WINDOW, None);
        assert_eq!(
            (snapshot.delivered, snapshot.retried, snapshot.dead),
            (1, 0, 0)
        );
        assert!(recorder.slots.lock().expect("lock").len() <= 2);
    }

    #[test]
    fn another_node_s_exported_slots_add_to_this_node_s_figures() {
        let here = StatsRecorder::new(T0);
        let there = StatsRecorder::new(T0);
        for i in 0..3 {
            here.record_intake(T0 + i * 1_000, "stripe", IntakeOutcome::Accepted, ms(4));
        }
        there.record_intake(T0 + 500, "stripe", IntakeOutcome::Accepted, ms(40));
        there.record_intake(T0 + 20_500, "forms", IntakeOutcome::Duplicate, ms(40));
        there.record_delivery(T0 + 21_000, DeliveryOutcome::Delivered);
        let exported: Vec<Vec<u8>> = there
            .export(slot_index(T0))
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect();
        assert_eq!(exported.len(), 2);
        let now = T0 + 30_000;
        let alone = here.snapshot(now, Duration::from_secs(60), None);
        assert_eq!(alone.intake_total(), 3);
        let both = here.snapshot_with(now, Duration::from_secs(60), None, &exported);
        assert_eq!(both.intake_total(), 5);
        assert_eq!(
            both.intake_by_source["forms"].count(IntakeOutcome::Duplicate),
            1
        );
        assert_eq!(both.delivered, 1);
        assert_eq!(both.ack_latency.count, 5);
        // A record that does not read is left out; slots outside the window too.
        let garbled = vec![b"{".to_vec()];
        assert_eq!(
            here.snapshot_with(now, Duration::from_secs(60), None, &garbled)
                .intake_total(),
            3
        );
        assert_eq!(
            first_slot(now, Duration::from_secs(60)),
            slot_index(now) - 5
        );
    }
}
