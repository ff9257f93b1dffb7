"""`authbench rotate-keys`: ask the auth service for a new JWT signing key.

The auth service keeps every retired key in its JWKS until the tokens it signed have
expired, and replicas fetch the JWKS again when a token names a kid they do not know, so
a rotation needs no restart anywhere and logs nobody out.

With the key store (JWT_KEY_ENCRYPTION_KEY set: `authbench up` and compose set one), the
keys live in Redis, shared by every auth replica: the rotation asked of any one of them
is published by all within JWT_KEYS_REFRESH_S, and the new key signs only after that, so
`--auth-url` may name any auth replica.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

from authcore.config import Settings

ROTATE_PATH = "/auth/admin/rotate-keys"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rotate-keys",
        help="rotate the JWT signing key of a running auth service",
        description="POST the auth service's operator endpoint to make a new signing key. "
        "Tokens signed by retired keys keep working until they expire. The admin secret "
        "is read from AUTH_ADMIN_TOKEN (never from the command line, where `ps` shows it).",
    )
    default_url = Settings().auth_url  # the services' own default
    parser.add_argument(
        "--auth-url",
        default=os.environ.get("AUTH_URL", default_url),
        help=f"auth service base URL (default: $AUTH_URL or {default_url})",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    token = os.environ.get("AUTH_ADMIN_TOKEN", "")
    if not token:
        print(
            "rotate-keys: set AUTH_ADMIN_TOKEN to the auth service's admin secret", file=sys.stderr
        )
        return 2
    url = args.auth_url.rstrip("/") + ROTATE_PATH
    if not url.startswith(("http://", "https://")):
        print(f"rotate-keys: --auth-url must be http(s): {args.auth_url!r}", file=sys.stderr)
        return 2
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as resp:  # noqa: S310
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        if err.code == 404:
            print(
                "rotate-keys: refused (wrong AUTH_ADMIN_TOKEN, or the endpoint is off)",
                file=sys.stderr,
            )
        else:
            print(f"rotate-keys: auth service answered {err.code}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as err:
        print(f"rotate-keys: cannot reach {url}: {err}", file=sys.stderr)
        return 1
    print(f"new signing key: {answer['kid']}")
    if "signs_in_s" in answer:  # the key store: published now, signing after every replica has it
        print(f"published to every auth replica; it signs in {answer['signs_in_s']} s")
    print(f"keys that verify: {', '.join(answer['verifying'])}")
    return 0
