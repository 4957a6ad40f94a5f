"""The Celery app. Broker, serialisation and eager mode come from Django settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmeval.settings")

app = Celery("mmeval")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])
