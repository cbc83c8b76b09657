"""workers.store against the machine's real Redis: idempotent job records, scheduling, heartbeats."""

from __future__ import annotations

import time

from workers.config import WorkerSettings
from workers.store import BatchStore


def _store(url: str) -> BatchStore:
    return BatchStore.from_settings(WorkerSettings(broker_url=url))


def test_a_job_is_counted_once_and_the_last_one_completes_the_batch(redis_url):
    store = _store(redis_url)
    store.create_batch("b1", 3, "batch", "/tmp/out")
    assert store.record_job("b1", "j1", {"error": None}) == 1
    assert store.record_job("b1", "j1", {"error": None}) == -1  # a redelivered task
    assert store.record_job("b1", "j2", {"error": "truncated"}) == 2
    assert store.record_job("b1", "j3", {"error": None}) == 3
    s = store.status("b1")
    assert (s.total, s.done, s.failed, s.completed) == (3, 2, 1, 3)
    assert store.recorded_jobs("b1") == {"j1", "j2", "j3"}
    assert store.recorded_among("b1", ["j1", "j9"]) == {"j1"}


def test_first_record_wins(redis_url):
    store = _store(redis_url)
    store.create_batch("b", 1, "batch", "/tmp/out")
    store.record_job("b", "j", {"error": None, "v": 1})
    store.record_job("b", "j", {"error": None, "v": 2})
    assert store.job_records("b") == [{"error": None, "v": 1}]


def test_scheduled_batches_are_released_once_when_due(redis_url):
    a, b = _store(redis_url), _store(redis_url)
    now = time.time()
    a.schedule("later", now + 3600, [{"x": 1}])
    a.schedule("due", now - 1, [{"x": 2}])
    assert a.claim_due(now) == [("due", [{"x": 2}])]
    assert b.claim_due(now) == []  # another worker's heartbeat gets nothing
    assert [bid for bid, _ in b.claim_due(now + 7200)] == ["later"]


def test_states_follow_the_batch(redis_url):
    store = _store(redis_url)
    store.create_batch("s", 1, "batch", "/o", release_at=time.time() + 60)
    assert store.status("s").state == "scheduled"
    store.mark_started("s")
    assert store.status("s").state == "running"
    store.record_job("s", "j", {"error": None})
    assert store.mark_finished("s") and not store.mark_finished("s")
    assert store.status("s").state == "finished"
    assert store.status("missing") is None


def test_heartbeats_and_throughput_history(redis_url):
    store = _store(redis_url)
    store.heartbeat("w#0", {"pid": 1})
    assert store.live_workers() == {"w#0": {"pid": 1}}
    store.remove_worker("w#0")
    assert store.live_workers() == {}
    now = time.time()
    store.add_throughput(5, now)
    store.add_throughput(2, now)
    series = store.throughput_per_minute(10, now)
    assert len(series) == 10 and series[-1][1] == 7 and sum(n for _, n in series) == 7
