"""The latency cross-check's floor: the bench's read mix with no credential at all.

Each read is then the gateway and a replica answering 401 at once (no Redis, no signature,
no introspection). Measured by Locust and by h2load at the same offered rate
(authbench/bench/crosscheck.py), the difference is what the generator itself adds to a
request's time on this machine, the part of Locust's figures that is not the system's.
The options, warm-up, capture window and µs HdrHistograms are the bench locustfile's
(imported for its listeners); only the user differs.
"""

from __future__ import annotations

import loadtests.locustfile as bench  # its options, capture window and HDR recording
from authbench.modes import Login


class AnonymousReader(bench.AuthUser):
    """Reads /api/me and /api/items/N, paced as the bench users are, never logged in."""

    login_mode = Login.SESSION  # never used: this user does not log in

    def login(self) -> bool:
        return True

    def forget_credential(self) -> None:
        return None

    def read(self, path: str, name: str) -> None:
        with self.client.get(path, name=name, catch_response=True) as response:
            if response.status_code == 401:
                response.success()  # the answer this floor measures
            else:
                response.failure(f"HTTP {response.status_code}, expected 401")
