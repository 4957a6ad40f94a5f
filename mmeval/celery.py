"""The Celery app. Broker, serialisation and eager mode come from Django settings.

A missing or bad variable stops a worker or beat with its one line (``mmeval: …``), as
gunicorn (gunicorn.conf.py), ``check`` and ``migrate`` (manage.py) do, not with a traceback.
"""

import os
import sys

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmeval.settings")

app = Celery("mmeval")


@app.on_configure.connect
def _settings_read_or_exit(**_) -> None:
    """Celery reads its configuration from Django's settings the first time it needs a value
    (before any of its own output): read them here first, so a bad variable ends the process
    with the message that names it. A web process has read its settings long before."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 - evaluating settings is the point
    except ImproperlyConfigured as exc:
        print(f"mmeval: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


@signals.worker_init.connect
@signals.worker_process_init.connect
def _torch_threads(**_) -> None:
    """MMEVAL_TORCH_THREADS per worker process: one each when several single-threaded
    workers share a CPU machine (two OpenMP pools on two cores spin against each other)."""
    from django.conf import settings

    if settings.MMEVAL_TORCH_THREADS:
        import torch

        torch.set_num_threads(settings.MMEVAL_TORCH_THREADS)
