"""The store axes as matrix dimensions: parsing (bad values name their flag), cell ids,
groups (what shares a cluster), and a study made of several matrices."""

from __future__ import annotations

import pytest

from authbench.bench import axes
from authbench.bench.axes import NO_PROXY, StoreLink
from authbench.bench.matrix import Load, Matrix


def test_the_default_rtt_is_the_direct_link_and_any_rtt_brings_its_control_pair() -> None:
    assert axes.parse_store_rtts("0") == (NO_PROXY,)
    assert axes.parse_store_rtts("1,5") == (
        NO_PROXY, StoreLink(True, 0.0), StoreLink(True, 1.0), StoreLink(True, 5.0),
    )  # fmt: skip
    assert axes.parse_store_rtts("direct,0") == (NO_PROXY, StoreLink(True, 0.0))


@pytest.mark.parametrize(
    ("flag", "parse", "text", "message"),
    [
        ("--store-rtt", axes.parse_store_rtts, "-1", "0 to 1000 ms"),
        ("--store-rtt", axes.parse_store_rtts, "fast", "not a number"),
        ("--store-rtt", axes.parse_store_rtts, "", "at least one"),
        ("--redis-cpus", axes.parse_redis_cpus, "0", "more than 0 cores"),
        ("--redis-cpus", axes.parse_redis_cpus, "-0.5", "more than 0 cores"),
        ("--redis-cpus", axes.parse_redis_cpus, "half", "not a number"),
        ("--token-bytes", axes.parse_token_bytes, "-3", "0 to 5000"),
        ("--token-bytes", axes.parse_token_bytes, "1.5", "whole number"),
    ],
)
def test_a_bad_value_is_refused_naming_its_flag(
    flag: str, parse: object, text: str, message: str
) -> None:
    assert callable(parse)
    with pytest.raises(ValueError, match=flag) as err:
        parse(text)
    assert message in str(err.value)


def test_redis_cpus_and_token_bytes_parse() -> None:
    assert axes.parse_redis_cpus("none,0.05,0.05") == (None, 0.05)
    assert axes.parse_token_bytes("0,1000") == (0, 1000)
    assert axes.token_settings(0) == {}
    padded = axes.token_settings(3000)
    assert padded["ACCESS_TOKEN_PAD_BYTES"] == "3000" and int(padded["JWT_MAX_BYTES"]) >= 6000


def test_store_axes_are_matrix_dimensions_with_their_own_cell_ids_and_groups() -> None:
    matrix = Matrix(
        modes=("session", "jwt"), replicas=(1,), loads=(Load(30, 15),), jwt_algs=("EdDSA",),
        store_links=axes.parse_store_rtts("5"), redis_cpus=(None, 0.05), token_bytes=(0, 500),
    )  # fmt: skip
    cells = matrix.configs()
    # session: 3 links x 2 caps x 1 pad (a cookie has no padding); jwt: 3 x 2 x 2.
    assert len(cells) == 6 + 12
    ids = {c.cell_id for c in cells}
    assert "r1-session-x1-u30at15-EdDSA" in ids  # the defaults keep today's ids
    assert "r1-jwt-x1-u30at15-EdDSA-rtt5ms-cpu0.05-pad500" in ids
    assert "r1-session-x1-u30at15-EdDSA-rtt0ms" in ids  # the proxy's control cell
    assert len(ids) == len(cells)
    # A cluster per (settings, replicas, alg, proxy or not, padding); the quota and the
    # proxy's delay are set live, cell by cell.
    groups = {c.group for c in cells}
    assert len(groups) == 2 * 2  # direct/proxied x 2 pads (session and jwt share settings)
    schedule = matrix.schedule()
    assert sum(len(g) for g in schedule) == len(cells)
    for group in schedule:
        assert len({c.group for c in group}) == 1


def test_a_study_joins_matrices_and_measures_a_shared_cell_once() -> None:
    base = {"modes": ("jwt",), "jwt_algs": ("EdDSA",)}
    distance = Matrix(
        replicas=(1,), loads=(Load(30, 15),), store_links=axes.parse_store_rtts("1"), **base
    )  # type: ignore[arg-type]
    capacity = Matrix(replicas=(1, 2), loads=(Load(30, 15),), redis_cpus=(None, 0.05),
                      **base)  # type: ignore[arg-type]  # fmt: skip
    study = Matrix(replicas=(1,), loads=(Load(30, 15),), repeats=3, seed=7,
                   also=(distance, capacity), **base)  # type: ignore[arg-type]  # fmt: skip
    # distance: 3 links; capacity: 2 replicas x 2 caps; the direct, uncapped x1 cell is
    # in all three and is measured once per repeat.
    assert len(study.configs()) == 3 + 4 - 1
    schedule = study.schedule()
    assert study.cell_count == 18 == sum(len(g) for g in schedule)
    repeats = [sorted(c.cell_id for g in schedule for c in g if c.repeat == r) for r in range(3)]
    assert [len(r) for r in repeats] == [6, 6, 6]
    orders = [[c.cell_id[3:] for g in schedule for c in g if c.repeat == r] for r in range(3)]
    assert len({tuple(o) for o in orders}) > 1  # shuffled between repeats


def test_the_scaling_preset_is_the_whole_study_within_15_minutes() -> None:
    from authbench.bench.presets import scaling

    preset = scaling()
    cells = preset.matrix.configs()
    links = {(c.store.proxied, c.store.rtt_ms) for c in cells}
    assert links == {(False, 0.0), (True, 0.0), (True, 1.0), (True, 5.0)}  # with control
    assert {c.redis_cpus for c in cells} == {None, 0.02}
    assert {c.mode for c in cells if c.redis_cpus} == {"session", "jwt", "jwt+denylist"}
    assert preset.matrix.repeats == 3
    groups = preset.matrix.schedule()
    # Measured here: a cell costs its warm-up, capture and rest plus ~2.8 s (Locust's
    # start, health check, probes); a cluster start-up ~6 s.
    p = preset.protocol
    seconds = preset.matrix.cell_count * (p["warmup_s"] + p["capture_s"] + p["rest_s"] + 2.8)
    seconds += len(groups) * 6.0
    assert seconds <= 15 * 60, seconds


def test_redis_cpus_replaces_the_presets_quota() -> None:
    import argparse

    from authbench import cgroups
    from authbench.commands import bench

    try:
        cgroups.detect()
    except cgroups.CgroupError as err:
        pytest.skip(str(err))
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "--preset", "scaling", "--redis-cpus", "0.05"])
    config = bench.build_config(args)
    assert {c.redis_cpus for c in config.matrix.configs()} == {None, 0.05}
    assert config.matrix.repeats == 3 and config.protocol.capture_s == 4.0


def test_the_compose_cap_is_lifted_for_real_and_put_on_every_shard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `docker update` RedisCap runs on a compose cluster stack (the engine itself is
    tested by hand: `--cpus 0` leaves NanoCpus as it was, so lifting a cap must name the
    machine's CPUs). Only the docker CLI is replaced; nothing here stands in for Redis."""
    from authbench.targets.compose import CLUSTER, ComposeTarget, Container

    class Stack(ComposeTarget):
        def containers(self, service: str | None = None, *, all: bool = False) -> list[Container]:
            return [Container(f"id-{service}", f"p-{service}-1", str(service), "running", "", 0)]

    ran: list[list[str]] = []
    monkeypatch.setattr(axes.subprocess, "run", lambda argv, **_kw: ran.append(argv))
    monkeypatch.setattr(axes.os, "cpu_count", lambda: 2)
    cap = axes.RedisCap(Stack(store=CLUSTER), "test")
    cap.apply(0.5)
    cap.apply(None)
    assert [(argv[3], argv[4]) for argv in ran] == [
        ("0.5", "id-redis-shard-1"), ("0.5", "id-redis-shard-2"), ("0.5", "id-redis-shard-3"),
        ("2", "id-redis-shard-1"), ("2", "id-redis-shard-2"), ("2", "id-redis-shard-3"),
    ]  # fmt: skip
