"""Mode opaque's pieces without processes: the client credential, the form, the settings."""

from __future__ import annotations

import base64

import pytest

from authcore.config import Settings
from authcore.errors import ConfigError, InvalidField
from authcore.introspection import (
    client_authenticated,
    client_authorization,
    parse_introspection_form,
)

SECRET = "s" * 40


def test_the_client_credential_round_trips_and_nothing_else_passes() -> None:
    good = client_authorization("resource", SECRET)
    assert client_authenticated(good, "resource", SECRET)
    assert client_authenticated(good.replace("Basic", "basic"), "resource", SECRET)
    wrong = [
        None,
        "",
        "Basic",
        "Bearer " + good.split()[1],
        client_authorization("resource", SECRET + "x"),
        client_authorization("other", SECRET),
        client_authorization("resource", SECRET[:-1]),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"resource:" + SECRET.encode() + b"\xff").decode(),
        "Basic \udcff\udcfe",  # non-UTF-8 header bytes as aiohttp hands them over
    ]
    for header in wrong:
        assert not client_authenticated(header, "resource", SECRET), header
    # No secret configured: nothing authenticates, not even an empty password.
    assert not client_authenticated(client_authorization("resource", ""), "resource", "")


def test_a_well_formed_form_is_read() -> None:
    parsed = parse_introspection_form(b"token=abc%2Bdef&token_type_hint=access_token")
    assert (parsed.token, parsed.token_type_hint) == ("abc+def", "access_token")
    assert parse_introspection_form(b"token=x").token_type_hint is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"token=",
        b"hint=x",
        b"token=a&token=b",  # RFC 6749 3.1: never twice
        b"token=%FF%FE",  # percent-encoded bytes that are not UTF-8
        b"token=\xff\xfe",  # raw bytes that are not UTF-8
        b"token=%ED%A0%80",  # an encoded lone surrogate
        b"token=a%00b",  # a control character
        b"token=a&&b",  # not strict form syntax
        b"token=a&token_type_hint=jwt",  # a hint RFC 7009 does not define
        b"&".join(b"f%d=1" % i for i in range(20)) + b"&token=a",  # too many fields
    ],
)
def test_a_malformed_form_is_a_400_that_says_why(body: bytes) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_introspection_form(body)
    assert caught.value.status == 400 and caught.value.detail


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "soon"])
def test_a_bad_cache_ttl_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match="INTROSPECT_CACHE_S"):
        Settings.from_env({"INTROSPECT_CACHE_S": value})


def test_good_introspection_settings_are_taken() -> None:
    settings = Settings.from_env({"INTROSPECT_CACHE_S": "2.5", "INTROSPECT_SECRET": SECRET})
    assert settings.introspect_cache_s == 2.5 and settings.introspect_secret == SECRET
    assert Settings.from_env({}).introspect_secret == ""  # off unless a deployment sets it


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"INTROSPECT_SECRET": "short"}, "INTROSPECT_SECRET"),
        ({"INTROSPECT_CLIENT_ID": "a:b"}, "INTROSPECT_CLIENT_ID"),
        ({"INTROSPECT_CLIENT_ID": ""}, "INTROSPECT_CLIENT_ID"),
        ({"OPAQUE_TTL_S": "0"}, "OPAQUE_TTL_S"),
        ({"INTROSPECT_TIMEOUT_MS": "0"}, "INTROSPECT_TIMEOUT_MS"),
    ],
)
def test_other_bad_introspection_settings_are_refused(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)
