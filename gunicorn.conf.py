"""gunicorn settings for mmeval: ``gunicorn -c gunicorn.conf.py mmeval.wsgi``.

Every knob comes from the environment. Each worker holds one persistent database
connection (DB_CONN_MAX_AGE), so keep WEB_CONCURRENCY + Celery processes below Postgres'
max_connections (README, "Run in production").
"""

import multiprocessing
import os
import sys

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# Sync workers: a participant request is short and database-bound; two per core keeps the
# cores busy while others wait on Postgres.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count()))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# A dataset upload (up to MMEVAL_UPLOAD_MAX_BYTES, images re-encoded) is the slowest request.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then, so a slow leak (e.g. a researcher's adapter loaded during
# registration) never grows without bound. Jitter keeps them from restarting together.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "200"))
# The TLS proxy's address(es): only they may say the request came over https.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Heartbeat files in memory, not on a container's overlay filesystem.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Client (as forwarded by the proxy), request, status, bytes, referrer, agent, time in ms.
access_log_format = '%({x-forwarded-for}i)s %(h)s %(t)s "%(r)s" %(s)s %(B)s "%(f)s" "%(a)s" %(M)sms'


def on_starting(server):
    """Read the Django settings once in the master: a missing or bad variable stops gunicorn
    with its one-line message, instead of every worker failing to boot in a loop."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmeval.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.SECRET_KEY  # noqa: B018 - evaluating settings is the point
    except ImproperlyConfigured as exc:
        print(f"mmeval: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
