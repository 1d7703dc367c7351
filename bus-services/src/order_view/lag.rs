//! How far the view lags behind the events: a fixed histogram of
//! microseconds with three significant digits (like an HDR histogram: every
//! value is kept within 1% of itself, in constant memory whatever the
//! traffic), and its percentiles.

use contracts::shop::order_view::LagSummary;

/// Values below this are kept exactly, one bucket each.
const EXACT: u64 = 1_000;
/// Buckets per power of ten above [`EXACT`] (100..=999 as the leading digits).
const PER_DECADE: usize = 900;
/// Powers of ten above [`EXACT`] covered: up to 10^13 µs, about four months.
const DECADES: usize = 10;

/// Lag samples in microseconds.
#[derive(Debug, Clone)]
pub struct LagHistogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; bucket_count()],
            total: 0,
            max_us: 0,
        }
    }
}

const fn bucket_count() -> usize {
    // EXACT is a small constant: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let exact = EXACT as usize;
    exact + PER_DECADE * DECADES
}

/// The bucket of `value` and the largest value it holds.
fn bucket(value: u64) -> usize {
    if value < EXACT {
        return usize::try_from(value).unwrap_or(0);
    }
    // Scale down to three leading digits (100..=999) and count the decades.
    let (mut leading, mut decade) = (value, 0_usize);
    while leading >= EXACT {
        leading /= 10;
        decade += 1;
    }
    if decade > DECADES {
        return bucket_count() - 1;
    }
    let offset = usize::try_from(leading.saturating_sub(100)).unwrap_or(0);
    (bucket_count() - PER_DECADE * DECADES + (decade - 1) * PER_DECADE + offset).min(bucket_count() - 1)
}

/// The largest value bucket `index` holds.
fn upper(index: usize) -> u64 {
    let exact = bucket_count() - PER_DECADE * DECADES;
    if index < exact {
        return u64::try_from(index).unwrap_or(u64::MAX);
    }
    let above = index - exact;
    let (decade, offset) = (above / PER_DECADE + 1, above % PER_DECADE);
    let scale = 10_u64.saturating_pow(u32::try_from(decade).unwrap_or(u32::MAX));
    (100 + u64::try_from(offset).unwrap_or(0) + 1)
        .saturating_mul(scale)
        .saturating_sub(1)
}

impl LagHistogram {
    /// Records one lag.
    pub fn record(&mut self, lag_us: u64) {
        if let Some(count) = self.counts.get_mut(bucket(lag_us)) {
            *count += 1;
        }
        self.total += 1;
        self.max_us = self.max_us.max(lag_us);
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The lag at or below which `quantile` (0 to 1) of the samples lie, in
    /// µs (the upper end of its bucket, never above the largest sample).
    pub fn quantile_us(&self, quantile: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        // Rank of the wanted sample, 1-based; the float is at most `total`.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper(index).min(self.max_us);
            }
        }
        self.max_us
    }

    /// The percentiles in milliseconds.
    pub fn summary(&self) -> LagSummary {
        #[allow(clippy::cast_precision_loss)]
        // To a hundredth of a millisecond, below the buckets' resolution.
        let ms = |us: u64| (us as f64 / 10.0).round() / 100.0;
        LagSummary {
            events: self.total,
            lag_p50_ms: ms(self.quantile_us(0.50)),
            lag_p90_ms: ms(self.quantile_us(0.90)),
            lag_p99_ms: ms(self.quantile_us(0.99)),
            lag_max_ms: ms(self.max_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_three_significant_digits() {
        for value in [0, 1, 999, 1_000, 1_234, 99_999, 123_456_789, 10_u64.pow(12)] {
            let high = upper(bucket(value));
            assert!(high >= value, "{value} above its bucket's end {high}");
            assert!(high - value <= value / 100 + 1, "{value}: bucket end {high} too far");
        }
        assert_eq!(bucket(u64::MAX), bucket_count() - 1);
    }

    #[test]
    fn percentiles_come_from_the_samples() {
        let mut lags = LagHistogram::default();
        assert_eq!(lags.summary(), LagSummary::default());
        for ms in 1..=100 {
            lags.record(ms * 1_000);
        }
        let summary = lags.summary();
        assert_eq!(summary.events, 100);
        assert!((summary.lag_p50_ms - 50.0).abs() <= 0.5, "{summary:?}");
        assert!((summary.lag_p99_ms - 99.0).abs() <= 1.0, "{summary:?}");
        assert!((summary.lag_max_ms - 100.0).abs() < f64::EPSILON, "{summary:?}");
    }
}
