"""UserDirectory: the benchmark's user database, with real argon2id password hashes.

Users `user{i}` / `password{i}` (i < AUTH_SEED_USERS) are seeded in the background at
start-up on one thread of their own, so the service is ready at once and logins, which
verify on a separate pool (argon2-cffi releases the GIL), never queue behind the seeding.
Progress is the `authbench_auth_seeded_users` gauge.

Every login costs exactly one argon2id verification, whoever it names (no enumeration,
by time or by answer): a user with a hash is verified against it; an unknown user, and
a seeded user whose hash is not made yet, are verified against a dummy hash of the same
parameters. For the latter the answer then comes from a constant-time comparison with
the password the seed defines (`password{i}`, the contract's). Making the missing hash on
the login path instead cost a hash *plus* a verification, twice the time of an unknown
user, which told an observer during seeding which names exist.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from authcore import metrics
from authcore.config import Settings

log = logging.getLogger("auth_service.users")

SEEDED_USER = re.compile(r"user(0|[1-9][0-9]{0,8})")


class UserDirectory:
    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=1,
            type=Type.ID,
        )
        self._seed_count = settings.seed_users
        self._hashes: dict[str, str] = {}
        self._stopping = False
        self._pool = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 1, thread_name_prefix="argon2"
        )
        # One thread: seeding leaves the other cores to logins and the event loop.
        self._seed_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2-seed")
        # Verified against when the user does not exist: same cost, same answer.
        self._dummy_hash = self._hasher.hash("not-a-password-of-anyone")

    @property
    def seeded(self) -> int:
        return len(self._hashes)

    def _seeded_password(self, username: str) -> str | None:
        match = SEEDED_USER.fullmatch(username)
        if match is None or int(match.group(1)) >= self._seed_count:
            return None
        return "password" + match.group(1)

    def _ensure_hash(self, username: str) -> str | None:
        """Seeding only: the user's hash, made now if it is not yet."""
        stored = self._hashes.get(username)
        if stored is None:
            password = self._seeded_password(username)
            if password is None:
                return None
            stored = self._hashes.setdefault(username, self._hasher.hash(password))
        return stored

    async def seed(self) -> None:
        """Hash every seeded user's password in the background, in order."""
        loop = asyncio.get_running_loop()

        def _seed_all() -> None:
            for i in range(self._seed_count):
                if self._stopping:
                    return
                self._ensure_hash(f"user{i}")
                metrics.SEEDED_USERS.set(len(self._hashes))

        await loop.run_in_executor(self._seed_pool, _seed_all)
        log.info("seeded %d users with argon2id hashes", len(self._hashes))

    async def verify(self, username: str, password: str) -> bool:
        """Whether `password` is `username`'s; costs one argon2id verification either way."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._verify_sync, username, password)

    def _verify_sync(self, username: str, password: str) -> bool:
        metrics.PASSWORD_VERIFICATIONS.inc()
        stored = self._hashes.get(username)
        if stored is not None:
            return self._check(stored, password)
        self._check(self._dummy_hash, password)  # the same one verification's cost
        expected = self._seeded_password(username)
        if expected is None:
            return False
        return secrets.compare_digest(password.encode(), expected.encode())

    def _check(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        self._stopping = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._seed_pool.shutdown(wait=False, cancel_futures=True)
