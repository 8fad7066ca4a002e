"""Whole events only: chunks pass as they come, a torn tail is held until its event ends."""

from __future__ import annotations

import pytest

from substratus.gateway.sse import EventFramer, EventTooLarge


def test_whole_events_pass_untouched() -> None:
    framer = EventFramer(1024)
    chunk = b"data: {}\n\ndata: {}\n\n"
    assert framer.feed(chunk) is chunk and framer.rest() == b""


def test_a_torn_event_waits_for_its_end() -> None:
    framer = EventFramer(1024)
    assert framer.feed(b'data: {"a": 1}\n\ndata: {"b"') == b'data: {"a": 1}\n\n'
    assert framer.feed(b": 2}") == b""
    assert framer.feed(b"\n\ndata: [DONE]\n\n") == b'data: {"b": 2}\n\ndata: [DONE]\n\n'


def test_crlf_boundaries_count_too() -> None:
    assert EventFramer(1024).feed(b"data: 1\r\n\r\ndata: 2") == b"data: 1\r\n\r\n"


def test_a_torn_event_is_dropped_when_the_upstream_dies() -> None:
    framer = EventFramer(1024)
    framer.feed(b"data: 1\n\ndata: {")
    assert framer.drop() == len(b"data: {") and framer.rest() == b""


def test_an_event_that_never_ends_is_bounded() -> None:
    framer = EventFramer(16)
    with pytest.raises(EventTooLarge):
        framer.feed(b"data: " + b"x" * 32)
