"""Celery peer for side-by-side benchmarks (Redis broker + result backend on loopback).

Copied from ``../shared/peers/celery_app.py`` (the peer measured in the issues), formatted for
this repository's linter; the settings are unchanged. Not part of jetwork: run by the Celery
interpreter ``bench.celery_peer`` finds, never imported by the benchmark itself.
"""

import os

from celery import Celery

URL = os.environ.get("PEER_REDIS", "redis://127.0.0.1:16379/0")
app = Celery("peer", broker=URL, backend=URL)
app.conf.update(
    worker_prefetch_multiplier=64,
    task_acks_late=True,
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task
def noop(i=0):
    return i


@app.task
def gather(results):
    return len(results)
