"""Exact MVA and the bottleneck bounds against answers known independently of the code."""

from __future__ import annotations

import math

import pytest

from authbench.model.mva import Station, bounds, solve_closed

# Lazowska, Zahorjan, Graham, Sevcik, "Quantitative System Performance" (1984), ch. 6,
# p. 117: a timesharing model with 3 terminals, think time 15 s, CPU 121 visits x 5 ms,
# disk 1 70 x 30 ms, disk 2 50 x 27 ms. The book's exact MVA gives queue lengths 0.0976,
# 0.3947 and 0.2350 (also pinned by the LQN solver's libmva regression test0), throughput
# 0.152 interactions/s and response time 4.80 s.
QSP = [Station("cpu", 121 * 0.005), Station("disk1", 70 * 0.030), Station("disk2", 50 * 0.027)]


def test_mva_reproduces_the_textbook_timesharing_example() -> None:
    result = solve_closed(QSP, 3, think_s=15.0)
    assert result.queue["cpu"] == pytest.approx(0.0976, abs=5e-4)
    assert result.queue["disk1"] == pytest.approx(0.3947, abs=5e-4)
    assert result.queue["disk2"] == pytest.approx(0.2350, abs=5e-4)
    assert result.throughput == pytest.approx(0.152, abs=5e-4)
    assert result.response_s == pytest.approx(4.80, abs=5e-3)
    # Little's law over the whole loop: N = X (R + Z).
    assert result.throughput * (result.response_s + 15.0) == pytest.approx(3.0)


def _finite_source(demand: float, think: float, n: int, servers: int) -> float:
    """Throughput of the machine-repairman model M/M/m//N from its closed-form
    stationary distribution (Kleinrock, Queueing Systems vol. 1, sec. 3.8)."""
    weights = []
    for k in range(n + 1):
        w = math.factorial(n) / math.factorial(n - k) * (demand / think) ** k
        w /= (
            math.factorial(k)
            if k <= servers
            else math.factorial(servers) * servers ** (k - servers)
        )
        weights.append(w)
    total = sum(weights)
    return sum(w / total * min(k, servers) for k, w in enumerate(weights)) / demand


@pytest.mark.parametrize(("n", "servers"), [(1, 2), (2, 2), (5, 2), (12, 3), (48, 2)])
def test_a_multi_server_station_matches_the_finite_source_formula(n: int, servers: int) -> None:
    got = solve_closed([Station("cpu", 1.0, servers=servers)], n, think_s=2.0).throughput
    assert got == pytest.approx(_finite_source(1.0, 2.0, n, servers), rel=1e-9)


def test_a_delay_station_only_adds_latency() -> None:
    base = solve_closed([Station("cpu", 0.01)], 1)
    delayed = solve_closed([Station("cpu", 0.01), Station("rtt", 0.005, delay=True)], 1)
    assert delayed.response_s == pytest.approx(base.response_s + 0.005)
    # Saturated, the delay holds customers but the bottleneck's rate is unchanged.
    many = solve_closed([Station("cpu", 0.01), Station("rtt", 0.005, delay=True)], 200)
    assert many.throughput == pytest.approx(100.0, rel=1e-6)
    assert many.utilisation["rtt"] == 0.0


def test_copies_are_the_same_as_separate_identical_stations() -> None:
    together = solve_closed([Station("rep", 0.004, copies=4), Station("db", 0.001)], 20, 0.01)
    apart = solve_closed(
        [*(Station(f"rep{i}", 0.001) for i in range(4)), Station("db", 0.001)], 20, 0.01
    )
    assert together.throughput == pytest.approx(apart.throughput, rel=1e-12)
    assert together.queue["rep"] == pytest.approx(apart.queue["rep0"], rel=1e-12)
    assert together.utilisation["rep"] == pytest.approx(apart.utilisation["rep0"], rel=1e-12)


def test_bounds_of_the_textbook_example() -> None:
    b = bounds(QSP, think_s=15.0)
    assert b.bottleneck == "disk1"
    assert b.max_throughput == pytest.approx(1 / 2.1)
    assert b.total_demand_s == pytest.approx(0.605 + 2.1 + 1.35)
    assert b.knee_population == pytest.approx((4.055 + 15.0) / 2.1)
    assert b.closed_throughput(3, 15.0) == pytest.approx(3 / 19.055)
    # Exact MVA never beats either bound, at any population.
    for n in (1, 3, 9, 30):
        assert solve_closed(QSP, n, 15.0).throughput <= b.closed_throughput(n, 15.0) + 1e-12


def test_bounds_of_replicated_and_multi_server_stations() -> None:
    b = bounds([Station("rep", 0.004, copies=8), Station("redis", 0.0006)])
    assert b.bottleneck == "redis"  # 8 replicas: 0.5 ms each per request < 0.6 ms
    assert b.max_throughput == pytest.approx(1 / 0.0006)
    b2 = bounds([Station("cpu", 0.001, servers=2), Station("rtt", 1.0, delay=True)])
    assert b2.max_throughput == pytest.approx(2000.0)  # the delay never bounds throughput


@pytest.mark.parametrize(
    "make",
    [
        lambda: Station("x", -1.0),
        lambda: Station("x", math.nan),
        lambda: Station("x", 1.0, servers=0),
        lambda: solve_closed([Station("x", 1.0)], 0),
        lambda: solve_closed([Station("x", 1.0)], 1, think_s=-1.0),
        lambda: bounds([Station("x", 1.0, delay=True)]),
    ],
)
def test_nonsense_is_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]
