"""The revocation window against real clusters: every replica asked, every mode generic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authbench import modes
from authbench.bench import revocation_window as rw
from authbench.chaos import probes
from authbench.cli import build_parser
from authbench.commands import revocation_window as command
from tests.conftest import ClusterFactory


def test_percentile_is_a_measured_value_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert rw.percentile(values, 0.50) == 50.0
    assert rw.percentile(values, 0.99) == 99.0
    assert rw.percentile([3.0], 0.99) == 3.0
    assert rw.percentile([], 0.5) != rw.percentile([], 0.5)  # NaN


def test_modes_sharing_settings_share_a_cluster() -> None:
    groups = rw.deployment_groups(modes.MODES)
    members = [m for _settings, group in groups for m in group]
    assert sorted(m.key for m in members) == sorted(modes.keys(modes.MODES))  # each once
    for settings, group in groups:
        assert all(dict(m.settings) == settings for m in group)
    assert len(groups) == len({tuple(sorted(m.settings.items())) for m in modes.MODES})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--modes", "no-such-mode"], "unknown mode"),
        (["--logouts", "0"], "--logouts"),
        (["--timeout", "0"], "--timeout"),
        (["--replicas", "0"], "--replicas"),
        (["--store", "single,replicas:x"], "--store: store topology 'replicas:x'"),
    ],
)
def test_bad_options_are_refused_naming_the_flag(argv: list[str], message: str) -> None:
    args = build_parser().parse_args(["revocation-window", *argv])
    with pytest.raises(ValueError, match=message):
        command.build_config(args)


def test_several_stores_are_measured_in_one_run_in_the_order_given() -> None:
    args = build_parser().parse_args(
        ["revocation-window", "--store", "replicas:2,single,replicas:2"]
    )
    stores = command.build_config(args).stores
    assert [str(s) for s in stores] == ["replicas:2", "single"]


def test_session_and_denylist_windows_are_measured_on_every_replica(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cluster = make_cluster(replicas=3, env={"JWT_REVOCATION": "denylist"})
    rw._wait_login(cluster.gateway_url)
    results = []
    for mode in (modes.SESSION, modes.JWT_DENYLIST):
        assert mode.served_by(cluster.settings)
        result = rw.measure_mode(
            cluster.gateway_url, cluster.replica_urls(), mode, logouts=5, timeout_s=5.0
        )
        results.append(result)
        assert len(result.logouts) == 5 and result.revokes
        for logout in result.logouts:
            assert logout.replicas == 3 and logout.refused_by == 3
            assert len(logout.first_refusals_ms) == 3
            assert logout.window_ms == max(logout.first_refusals_ms)
            assert 0 < logout.window_ms < 5000
            assert logout.polls >= 3  # each replica asked at least once after logout
        summary = result.summary()
        assert summary["verdict"] == "measured"
        assert summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    # chaos's revocation probe is the same measurement, one logout at a time
    probe = probes.revocation_window(
        cluster.gateway_url, cluster.replica_urls(), modes.JWT_DENYLIST, 7, 5.0
    )
    assert probe.rejected_by == probe.replicas == 3 and not probe.through_gateway
    assert probe.window_ms is not None and 0 < probe.window_ms < 5000
    rw.write_results(tmp_path / "run", results, {"run_id": "t", "command": ["x"]})
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [s["mode"] for s in written] == [modes.SESSION.key, modes.JWT_DENYLIST.key]
    assert len((tmp_path / "run" / "windows.csv").read_text().splitlines()) == 1 + 10


def test_a_mode_that_never_revokes_is_reported_until_exp_without_spinning(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(replicas=2, env={"JWT_REVOCATION": "none", "JWT_TTL_S": "300"})
    rw._wait_login(cluster.gateway_url)
    result = rw.measure_mode(
        cluster.gateway_url,
        cluster.replica_urls(),
        modes.JWT,
        logouts=100,
        timeout_s=0.5,
        give_up_after=2,
    )
    assert result.gave_up and len(result.logouts) == 2  # not 100 timeouts
    assert all(lo.refused_by == 0 and lo.window_ms is None for lo in result.logouts)
    summary = result.summary()
    assert summary["verdict"] == rw.NEVER
    assert 250 < summary["token_expires_in_s"] <= 300  # the token's own exp, read from it


def test_validated_at_the_gateway_the_gateway_is_asked(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["revocation-window", "--modes", "session", "--logouts", "3", "--replicas", "2",
         "--validate-at", "gateway", "--results-dir", str(tmp_path)]
    )  # fmt: skip
    config = command.build_config(args)
    assert config.places == ("gateway",)
    run_dir = rw.run(config, say=lambda _m: None)
    (summary,) = rw.read_summary(run_dir)
    assert summary["validate_at"] == "gateway" and summary["revoked"] == 3
    # One place checks the credential: the gateway, asked alone (a replica asked directly
    # would refuse even a fresh credential, which carries no assertion).
    rows = (run_dir / "windows.csv").read_text().splitlines()
    assert rows[0].endswith(",validate_at") and len(rows) == 1 + 3
    assert all(row.split(",")[3] == "1" and row.endswith(",gateway") for row in rows[1:])
    assert "| gateway |" in (run_dir / "README.md").read_text()
    with pytest.raises(ValueError, match="--validate-at"):
        command.build_config(
            build_parser().parse_args(["revocation-window", "--validate-at", "edge"])
        )
