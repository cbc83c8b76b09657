"""The broker transport: a channel closed after kombu let go of the connection still restores its messages."""

from __future__ import annotations

import pytest
from kombu import Connection

from workers.app import make_app
from workers.broker_transport import TRANSPORT, Transport
from workers.config import WorkerSettings


def _take_one_unacked(conn: Connection, queue: str) -> None:
    """Publish one message and receive it without acknowledging it (as a worker holds a running task)."""
    simple = conn.SimpleQueue(queue)
    simple.put({"n": 1})
    simple.get(timeout=5)  # received, not acked: the channel's QoS holds it as unacknowledged


def _close_after_the_transport_let_go(conn: Connection) -> None:
    """What kombu does when Celery drops a connection Redis broke: transport client gone, then the close."""
    channel = conn.default_channel
    conn.transport.client = None
    channel.close()


def test_the_stock_transport_crashes_there(redis_url):
    """The kombu race this transport guards against (if kombu fixes it, this test says so)."""
    conn = Connection(redis_url)
    _take_one_unacked(conn, "skin-test-stock")
    with pytest.raises(AttributeError, match="hostname"):
        _close_after_the_transport_let_go(conn)


def test_a_channel_closed_after_its_transport_let_go_restores_its_message(redis_url):
    conn = Connection(redis_url, transport=TRANSPORT)
    assert isinstance(conn.transport, Transport)
    _take_one_unacked(conn, "skin-test-queue")
    _close_after_the_transport_let_go(conn)  # stock kombu: AttributeError, and Celery exits
    with Connection(redis_url, transport=TRANSPORT) as again:
        message = again.SimpleQueue("skin-test-queue").get(timeout=5)
        assert message.payload == {"n": 1}  # restored to the queue, not lost
        message.ack()


def test_the_celery_app_uses_it():
    app = make_app(WorkerSettings.from_env())
    assert app.conf.broker_transport == TRANSPORT
    with app.connection_for_read() as conn:
        assert isinstance(conn.transport, Transport)
