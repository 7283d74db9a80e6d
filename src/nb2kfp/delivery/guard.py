"""Connection limits in front of uvicorn's HTTP protocol, for ``nb2kfp serve``.

uvicorn has no deadline for a request's headers and no cap on open connections: clients that open connections and
never finish their headers hold a file descriptor each until the process runs out (about a thousand) and stops
accepting, so ``/healthz`` and GitLab's deliveries go unanswered. :func:`guarded` wraps uvicorn's own protocol class:

- at most ``max_connections`` open at once: one more is aborted as soon as it is accepted (its descriptor freed);
- a connection whose first request's headers are not complete ``header_timeout`` seconds after it opened is aborted;
- no connection lives longer than ``lifetime`` seconds (a keep-alive connection dripping a second request's headers).

The body's read time is bounded in the request handler (:mod:`nb2kfp.delivery.webhook`). These bound what one
process can be made to hold; in production a reverse proxy (nginx, an ingress, a load balancer) in front of the
receiver should do the same, closer to the network: TLS, per-client limits, its own header and body timeouts.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

HEADER_END = b"\r\n\r\n"
MAX_HEADER_BYTES = 64 * 1024  # beyond this uvicorn's parser answers 400 itself


def guarded(max_connections: int, header_timeout: float, lifetime: float) -> type[asyncio.Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)``: uvicorn's own (``auto``) with the limits above."""
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    inner_class = cast(type[asyncio.Protocol], import_from_string(HTTP_PROTOCOLS["auto"]))
    open_connections: set[GuardedProtocol] = set()

    class GuardedProtocol(asyncio.Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.inner = inner_class(*args, **kwargs)
            self.transport: asyncio.Transport | None = None
            self.seen: bytes | None = b""  # the first bytes, until the headers' end (then None)
            self.timers: list[asyncio.TimerHandle] = []
            self.admitted = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)
            if len(open_connections) >= max_connections:
                self.transport.abort()
                return
            self.admitted = True
            open_connections.add(self)
            loop = asyncio.get_running_loop()
            self.timers = [loop.call_later(header_timeout, self._expire), loop.call_later(lifetime, self._expire)]
            self.inner.connection_made(transport)

        def _expire(self) -> None:
            if self.transport is not None:
                self.transport.abort()

        def data_received(self, data: bytes) -> None:
            if self.seen is not None:
                self.seen = (self.seen + data)[-MAX_HEADER_BYTES:]
                if HEADER_END in self.seen:
                    self.timers[0].cancel()
                    self.seen = None
            cast(Any, self.inner).data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.admitted:
                return
            open_connections.discard(self)
            for timer in self.timers:
                timer.cancel()
            self.inner.connection_lost(exc)

        def eof_received(self) -> bool | None:
            return cast(Any, self.inner).eof_received() if self.admitted else None

        def pause_writing(self) -> None:
            self.inner.pause_writing()

        def resume_writing(self) -> None:
            self.inner.resume_writing()

    return GuardedProtocol
