"""The Celery application: Redis broker, two queues, late acks, one model per worker process.

Run a worker with ``skin-plugin worker`` (or ``celery -A workers.app worker -Q urgent,batch``).
"""

from __future__ import annotations

import logging
import ssl

from celery import Celery
from kombu import Exchange, Queue

from workers.broker_transport import TRANSPORT
from workers.config import QUEUES, WorkerSettings

settings = WorkerSettings.from_env()


def make_app(settings: WorkerSettings) -> Celery:
    app = Celery("skin_plugin", broker=settings.broker_url, include=["workers.tasks", "workers.process"])
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        "queue_order_strategy": "priority",  # BRPOP urgent before batch
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,  # sweep for messages of dead workers every 10 s (default: 100 s)
        "unacked_mutex_expire": 30,  # a worker killed during a sweep blocks sweeps this long (default: 300 s)
        "health_check_interval": 15,
    }
    app.conf.update(
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES],
        task_default_queue="batch",
        task_acks_late=True,  # a task is acknowledged only after its records are in Redis
        task_reject_on_worker_lost=True,  # a killed worker's task goes back to the queue
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # results live in the batch store (workers.store), not a backend
        task_serializer="json", accept_content=["json"],
        broker_transport=TRANSPORT,  # kombu's Redis transport, kept alive through a Redis restart
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    if settings.broker_url.startswith("rediss://"):
        tls = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if settings.redis_tls_ca_certs:
            tls["ssl_ca_certs"] = settings.redis_tls_ca_certs
        app.conf.broker_use_ssl = tls
    return app


app = make_app(settings)
# pydicom may quote header values (PHI) in its warnings: keep them out of worker logs.
logging.getLogger("pydicom").setLevel(logging.ERROR)
# At --loglevel DEBUG Celery's pool logs every task's arguments (input paths, whose file names may hold a
# patient's name): keep that logger at INFO.
logging.getLogger("celery.pool").setLevel(logging.INFO)
