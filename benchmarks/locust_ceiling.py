"""Locust's own ceiling: one FastHttpUser class (as loadtests/locustfile.py uses) reading a
no-auth endpoint back to back. Run by benchmarks/generator_ceiling.py."""

from __future__ import annotations

from locust import FastHttpUser, task


class CeilingUser(FastHttpUser):
    @task
    def healthz(self) -> None:
        self.client.get(self.environment.parsed_options.ceiling_path, name="ceiling")


from locust import events  # noqa: E402


@events.init_command_line_parser.add_listener
def _options(parser, **kwargs):  # type: ignore[no-untyped-def]
    parser.add_argument("--ceiling-path", default="/healthz")
