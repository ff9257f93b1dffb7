"""The statistics behind the figures, against inputs whose answers are known."""

from __future__ import annotations

import math

import pytest

from authbench.bench.statistics import (
    Bucket,
    bucket_delta,
    bucket_densities,
    bucket_quantile,
    locust_round,
    merge_buckets,
    merge_response_times,
    response_time_percentile,
    spread,
)


def test_locust_round_matches_locusts_own_bucketing() -> None:
    # Locust's documented examples (locust.stats.bucket_response_time): 147 -> 150,
    # 3432 -> 3400, 58760 -> 59000; exact below 100 ms. Locust itself is not imported
    # here: it monkey-patches the test process with gevent.
    cases = {0.4: 0, 7.5: 8, 99.4: 99, 147: 150, 999: 1000, 3432: 3400, 58760: 59000}
    for ms, expected in cases.items():
        assert locust_round(ms) == expected


def test_percentile_of_a_uniform_histogram() -> None:
    histogram = {ms: 1 for ms in range(1, 101)}  # 1..100 ms, one request each
    # Locust's rule: the smallest value with no more than `fraction` of requests below it.
    assert response_time_percentile(histogram, 0.50) == 51
    assert response_time_percentile(histogram, 0.95) == 96
    assert response_time_percentile(histogram, 0.99) == 100
    assert response_time_percentile(histogram, 0.0) == 1


def test_percentile_on_skewed_data_reads_like_locusts_csv() -> None:
    histogram = {3: 500, 4: 300, 12: 150, 80: 40, 250: 9, 1200: 1}  # 1000 requests
    # What locust.stats.calculate_response_time_percentile answers for this histogram
    # (checked against Locust 2.47 by hand; Locust is not imported in the test process).
    expected = {0.5: 4, 0.66: 4, 0.9: 12, 0.95: 80, 0.99: 250, 0.999: 1200, 1.0: 1200}
    for fraction, value in expected.items():
        assert response_time_percentile(histogram, fraction) == value


def test_merging_repeats_equals_one_long_run() -> None:
    fast = {5: 90, 6: 10}
    slow = {50: 90, 60: 10}
    merged = merge_response_times([fast, slow])
    assert merged == {5: 90, 6: 10, 50: 90, 60: 10}
    # The pooled p99 is the slow run's tail, not the mean of the two p99s (6 and 60).
    assert response_time_percentile(merged, 0.99) == 60
    assert response_time_percentile(merged, 0.25) == 5
    assert response_time_percentile(merged, 0.75) == 50


def test_empty_histogram_has_no_percentile() -> None:
    assert math.isnan(response_time_percentile({}, 0.5))
    with pytest.raises(ValueError):
        response_time_percentile({1: 1}, 1.5)


def _cumulative(bounds: list[float], counts: list[float]) -> list[Bucket]:
    total, out = 0.0, []
    for le, count in zip(bounds, counts, strict=True):
        total += count
        out.append(Bucket(le, total))
    return out


def test_bucket_quantile_interpolates_inside_the_bucket() -> None:
    # 100 observations: 50 in (0, 1], 50 in (1, 2]; like Prometheus' histogram_quantile.
    buckets = _cumulative([1.0, 2.0, math.inf], [50, 50, 0])
    assert bucket_quantile(buckets, 0.5) == pytest.approx(1.0)
    assert bucket_quantile(buckets, 0.25) == pytest.approx(0.5)
    assert bucket_quantile(buckets, 0.75) == pytest.approx(1.5)
    assert bucket_quantile(buckets, 0.99) == pytest.approx(1.98)


def test_bucket_quantile_in_the_overflow_bucket_is_the_last_finite_bound() -> None:
    buckets = _cumulative([0.001, 0.01, math.inf], [10, 0, 90])
    assert bucket_quantile(buckets, 0.5) == 0.01
    assert math.isnan(bucket_quantile(_cumulative([1.0, math.inf], [0, 0]), 0.5))


def test_window_is_the_difference_of_two_scrapes_and_replicas_add_up() -> None:
    before = _cumulative([0.001, 0.01, math.inf], [5, 5, 0])
    after = _cumulative([0.001, 0.01, math.inf], [25, 5, 0])
    window = bucket_delta(after, before)
    assert [b.count for b in window] == [20, 20, 20]  # 20 new, all under 1 ms
    other_replica = _cumulative([0.001, 0.01, math.inf], [0, 20, 0])
    merged = merge_buckets([window, other_replica])
    assert [b.count for b in merged] == [20, 40, 40]
    assert bucket_quantile(merged, 0.5) == pytest.approx(0.001)
    shares = [share for _, _, share in bucket_densities(merged)]
    assert shares == pytest.approx([0.5, 0.5])


def test_a_restarted_counter_makes_the_later_scrape_the_window() -> None:
    before = _cumulative([1.0, math.inf], [100, 0])
    after = _cumulative([1.0, math.inf], [7, 0])  # the process restarted in between
    assert [b.count for b in bucket_delta(after, before)] == [7, 7]


def test_spread_of_repeats() -> None:
    s = spread([10.0, 12.0, 14.0])
    assert (s.n, s.mean, s.median, s.low, s.high) == (3, 12.0, 12.0, 10.0, 14.0)
    assert s.stdev == pytest.approx(2.0)
    assert s.relative == pytest.approx(2.0 / 12.0)
    single = spread([5.0, math.nan])
    assert (single.n, single.stdev) == (1, 0.0)
    assert spread([]).n == 0


def test_bucketed_percentiles_never_exceed_the_slowest_request() -> None:
    # Locust files 12.8 ms under the key 13; the exact slowest time is 12.8 ms, and the
    # CI run that read "p99 13.0 > max 12.8" showed the summary must not say otherwise.
    from authbench.bench.protocol import _client_figures
    from authbench.bench.summary import SummaryRow

    hist = {
        "total": {
            "num_requests": 200,
            "num_failures": 0,
            "response_times": {"2": 150, "13": 50},
            "max_response_time": 12.8,
        },
        "entries": {
            "GET /api/x": {"num_requests": 200, "response_times": {"2": 150, "13": 50}},
        },
    }
    row = SummaryRow(mode="jwt", replicas=1, users=1)
    _client_figures(row, hist, 10.0)
    assert row.max_ms == 12.8
    assert row.p50_ms == 2.0
    assert row.p99_ms == 12.8 and row.read_p99_ms == 12.8
    assert row.p50_ms <= row.p95_ms <= row.p99_ms <= row.max_ms
