"""A key with a stray newline, escaped forms of a key, passwords in URLs (issue 19, item 13/14)."""

from __future__ import annotations

import logging

import httpx
import pytest

import psanalytics as ps
from psanalytics.api.http import (
    ApiKeyError,
    RetryPolicy,
    build_client,
    redact,
    register_secret,
    send_with_retries,
)
from psanalytics.api.profile_store import ProfileStore
from psanalytics.errors import PsaError

KEY = "sk-newline-0123456789"


class Counting:
    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(200, json={"items": [], "total": 0})


@pytest.mark.parametrize(("key", "what"), [
    (KEY + "\n", "ends with a line break"),
    (KEY + "\r\n", "ends with a line break"),
    (" " + KEY, "starts with white space"),
    (KEY[:5] + "\t" + KEY[5:], "a control character at position 6"),
    (KEY[:5] + "é" + KEY[5:], "a non-ASCII character at position 6"),
])
def test_a_key_that_cannot_be_a_header_is_refused_by_connect_without_echoing_it(key, what):
    fake = Counting()
    with pytest.raises(ApiKeyError) as info:
        ps.connect("http://example.invalid", key, transport=httpx.MockTransport(fake), progress=False)
    msg = str(info.value)
    assert what in msg and "API key" in msg
    assert KEY not in msg and KEY[:5] not in msg and KEY[6:] not in msg
    assert isinstance(info.value, PsaError) and fake.requests == 0


def test_local_protocol_errors_are_not_retried():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.LocalProtocolError("Illegal header value b'epi-single x'")

    client = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://h")
    with pytest.raises(PsaError) as info:
        send_with_retries(client, "GET", "/x", policy=RetryPolicy.fast(6))
    assert len(calls) == 1 and info.value.attempts == 1
    assert "LocalProtocolError" in str(info.value) and "not retried" in str(info.value)


def test_escaped_forms_of_a_secret_are_redacted_in_messages_and_logs(caplog):
    secret = "tok-escape-987654\n"
    register_secret(secret)
    for text in ("Illegal header value b'epi-single tok-escape-987654\\n'",
                 '{"key": "tok-escape-987654\\n"}', "key=tok-escape-987654%0A",
                 "plain tok-escape-987654 here"):
        assert "tok-escape-987654" not in redact(text), text
    with caplog.at_level(logging.DEBUG, logger="httpx"):
        logging.getLogger("httpx").debug("header %r", ("epi-single " + secret).encode())
    assert "tok-escape-987654" not in caplog.text and "***" in caplog.text


def test_repr_of_a_store_masks_a_password_in_the_url():
    st = ProfileStore("https://analyst:pa55w0rd-x@profiles.example/", "k-123456",
                      transport=httpx.MockTransport(Counting()), progress=False)
    r = repr(st)
    assert "pa55w0rd-x" not in r and "k-123456" not in r
    assert r.startswith("ProfileStore(url='https://analyst:***@profiles.example'")


def test_build_client_refuses_the_key_too():
    with pytest.raises(ApiKeyError, match="ends with a line break"):
        build_client("http://h", api_key="abc-def-ghi\n")
