"""kombu's Redis transport, kept alive through a Redis restart.

When Redis goes away mid-run, Celery drops the broken connection and reconnects. kombu can close a
channel of that connection after the transport has already let go of its client (``transport.client``
is None); the channel then restores its unacknowledged messages, needs its connection parameters, and
raises ``AttributeError: 'NoneType' object has no attribute 'hostname'``. Celery treats that as an
unrecoverable error and the whole worker exits (seen in ``test_redis_restarted_mid_run_loses_no_job``;
kombu issues #582 and #970 show the same path). Here each channel remembers the parameters it last
connected with, so the restore still reaches Redis, or fails as the connection error it is.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

TRANSPORT = f"{__name__}:Transport"
"""The ``broker_transport`` setting that selects this transport."""


class Channel(kombu_redis.Channel):
    """A Redis channel that can still restore its unacknowledged messages after its transport let go."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        saved: dict[bool, dict[str, Any]] = self.__dict__.setdefault("_saved_connparams", {})
        if self.connection.client is None:
            if asynchronous not in saved:
                raise RedisConnectionError("broker connection already closed")
            return dict(saved[asynchronous])
        params = super()._connparams(asynchronous=asynchronous)
        saved[asynchronous] = dict(params)
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
