"""The listener spool's :class:`~skin_plugin.net.spool.BatchQueue` on the Celery queue."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skin_plugin.net.spool import BatchState
from skin_plugin.reports.summary import SUMMARY_NAME
from workers.client import submit_batch
from workers.store import BatchStore


@dataclass
class SpoolQueue:
    """Each spooled study becomes a batch with its reports in ``out_root/<batch id>``."""

    store: BatchStore
    out_root: Path
    queue: str = "urgent"
    route: str | None = None

    def submit(self, files: list[Path], batch_id: str) -> None:
        submit_batch(self.store, files, self.out_root / batch_id, queue=self.queue, route=self.route,
                     batch_id=batch_id)

    def state(self, batch_id: str) -> BatchState:
        """From the batch store; a batch it lost (embedded Redis restarted, record expired) counts as done
        only if its summary was written and it has no SRs to route (those are sent again: same UIDs)."""
        status = self.store.status(batch_id)
        if status is not None:
            return "done" if status.settled else "pending"
        if not self.route and (self.out_root / batch_id / SUMMARY_NAME).is_file():
            return "done"
        return "unknown"
