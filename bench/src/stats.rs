//! Exact percentiles over every sample (no histogram buckets, no sampling): the sample count
//! is bounded by `--payments`, so keeping them all is cheap and nothing is approximated.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Nearest-rank percentile of sorted samples: the smallest sample with at least `q` of all
/// samples at or below it.
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn summarize(samples: &[f64]) -> Summary {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let count = sorted.len();
    let mean = if count == 0 {
        0.0
    } else {
        sorted.iter().sum::<f64>() / count as f64
    };
    Summary {
        count,
        p50: round3(nearest_rank(&sorted, 0.50)),
        p95: round3(nearest_rank(&sorted, 0.95)),
        p99: round3(nearest_rank(&sorted, 0.99)),
        max: round3(sorted.last().copied().unwrap_or(0.0)),
        mean: round3(mean),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&samples);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50, 50.0);
        assert_eq!(s.p95, 95.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(s.mean, 50.5);
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(summarize(&[]).count, 0);
        let one = summarize(&[7.0]);
        assert_eq!((one.p50, one.p99, one.max), (7.0, 7.0, 7.0));
    }
}
