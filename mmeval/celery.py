"""The Celery app. Broker, serialisation and eager mode come from Django settings."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmeval.settings")

app = Celery("mmeval")
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
