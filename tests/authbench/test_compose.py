"""ComposeTarget's parsing of what docker, compose and redis-cli print (no engine needed)."""

from __future__ import annotations

from authbench.targets.compose import _container, _json_rows, parse_redis_info

INFO = """# Server\r
redis_version:7.0.15\r
tcp_port:6379\r
\r
# Stats\r
total_commands_processed:1234\r
instantaneous_ops_per_sec:56\r
# Commandstats\r
cmdstat_getex:calls=10,usec=20,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r
"""


def test_redis_info_is_flattened_and_keeps_values_with_colons_and_commas() -> None:
    info = parse_redis_info(INFO)
    assert info["redis_version"] == "7.0.15"
    assert info["total_commands_processed"] == "1234"
    assert info["cmdstat_getex"].startswith("calls=10,usec=20")
    assert "# Stats" not in info and "" not in info


def test_compose_ps_json_is_read_as_lines_or_as_one_array() -> None:
    line = (
        '{"ID":"abc","Name":"p-redis-1","Service":"redis","State":"exited",'
        '"Health":"","ExitCode":137}'
    )
    for out in (line + "\n" + line.replace("abc", "def"), f"[{line}]", ""):
        rows = _json_rows(out)
        assert all(row["Service"] == "redis" for row in rows)
    assert len(_json_rows(line + "\n" + line)) == 2
    assert _json_rows("") == []
    container = _container(_json_rows(line)[0])
    assert (container.id, container.state, container.exit_code) == ("abc", "exited", 137)
