"""``consume --dedupe redis://...``: one memory of stored record ids for several workers.

For sinks that cannot refuse a duplicate themselves across workers (files written by
different workers, stdout), a batch's ids are looked up in Redis before it is stored,
and written there (with a TTL) once the sink committed. A message goes to one consumer
at a time and comes again only after its consumer is gone, so looking up before and
remembering right after the commit (in the sink thread) is enough; the one window is a
worker killed between its sink's commit and its Redis write (well under a millisecond),
whose batch is then stored again by the next worker. Remembering before the commit
would close it the wrong way: a kill there would lose the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from logctl.errors import ConfigError, SinkUnreachable
from logctl.records import WireRow


class SharedIds:
    """Record ids stored by any worker, kept ``ttl_s`` seconds in Redis under ``prefix``."""

    def __init__(self, url: str, ttl_s: float, prefix: str = "logctl:id:") -> None:
        import redis  # loaded only for --dedupe

        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"--dedupe {url!r}: give a redis://HOST:PORT/DB URL")
        self._redis_error = redis.RedisError
        self._client: Any = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.where = urlsplit(url).netloc.rpartition("@")[2] or "localhost:6379"
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.prefix = prefix
        self._call(self._client.ping)

    def unseen(self, rows: list[WireRow]) -> list[WireRow]:
        """The rows no worker has stored yet (and the first of any repeated in the batch)."""
        if not rows:
            return rows
        found = self._call(self._client.mget, [self.prefix + str(r[0]) for r in rows])
        fresh, ids = [], set()
        for row, seen in zip(rows, found, strict=True):
            if seen is None and row[0] not in ids:
                ids.add(row[0])
                fresh.append(row)
        return fresh

    def remember(self, ids: Sequence[str]) -> None:
        """Note ids a sink has committed."""
        if not ids:
            return
        pipe = self._client.pipeline(transaction=False)
        for rid in ids:
            pipe.set(self.prefix + rid, b"1", px=self.ttl_ms)
        self._call(pipe.execute)

    def close(self) -> None:
        self._client.close()

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._redis_error as exc:
            raise SinkUnreachable(f"Redis at {self.where} (--dedupe): {exc}; the batch is not acked") from exc
