"""Pass server-sent events through whole: never half an event to the client.

An upstream chunk usually holds whole events (`data: {...}\\n\\n`) and then
goes out as it came, at once. Only the bytes after the last event boundary
are held back until the rest of their event arrives, so that when the
upstream dies mid-event the client gets a clean error event rather than a
torn JSON line it cannot parse.
"""

from __future__ import annotations

BOUNDARIES = (b"\n\n", b"\r\n\r\n")
DONE = b"data: [DONE]\n\n"


class EventTooLarge(Exception):
    """An event grew over the cap without ending (a broken or hostile upstream)."""


class EventFramer:
    def __init__(self, max_event_bytes: int) -> None:
        self.max_event_bytes = max_event_bytes
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        """The bytes that may go to the client now: everything up to the last event boundary."""
        if not self._held and chunk.endswith(b"\n\n"):
            return chunk  # the usual case: whole events, no copy
        data = self._held + chunk if self._held else chunk
        end = 0
        for boundary in BOUNDARIES:
            at = data.rfind(boundary)
            if at >= 0:
                end = max(end, at + len(boundary))
        self._held = data[end:]
        if len(self._held) > self.max_event_bytes:
            raise EventTooLarge(f"an event grew over {self.max_event_bytes} bytes without ending")
        return data[:end]

    def rest(self) -> bytes:
        """What is held when the upstream ended cleanly: it goes out as it is."""
        held, self._held = self._held, b""
        return held

    def drop(self) -> int:
        """Forget a torn event (the upstream died in it); how many bytes were dropped."""
        dropped, self._held = len(self._held), b""
        return dropped
