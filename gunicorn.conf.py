"""gunicorn settings for mmeval: ``gunicorn -c gunicorn.conf.py mmeval.wsgi``.

Every knob comes from the environment. Each worker holds one persistent database
connection (DB_CONN_MAX_AGE), so keep WEB_CONCURRENCY + Celery processes below Postgres'
max_connections (README, "Run in production").
"""

import os
import sys


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        sys.exit(f"mmeval: {name}={raw!r} is not an integer")


def _cores() -> int:
    """The cores this process may use (a container's cpuset, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{_int('PORT', 8000)}"
# Sync workers: a participant request is short and database-bound; two per core keeps the
# cores busy while others wait on Postgres.
workers = _int("WEB_CONCURRENCY", 2 * _cores())
threads = _int("GUNICORN_THREADS", 1)
# A dataset upload (up to MMEVAL_UPLOAD_MAX_BYTES, images re-encoded) is the slowest request.
timeout = _int("GUNICORN_TIMEOUT", 120)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Several instances on one address (SO_REUSEPORT: the kernel spreads connections over them),
# e.g. one per core or a start beside the running one; each keeps its own control socket.
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "0") == "1"
# Recycle workers now and then, so a slow leak (e.g. a researcher's adapter loaded during
# registration) never grows without bound. Jitter keeps them from restarting together. Not
# by default with reuse_port: each worker then listens on a socket of its own, and a
# recycled worker's queued connections are reset.
max_requests = _int("GUNICORN_MAX_REQUESTS", 0 if reuse_port else 2000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 200)
# Load Django (and the analysis package mmeval/wsgi.py imports) once in the master: workers,
# recycled ones too, fork ready instead of spending a second of CPU each on imports. Nothing
# opens a connection at import time, so no socket is shared across the fork.
preload_app = os.environ.get("GUNICORN_PRELOAD", "1") != "0"
# The TLS proxy's address(es): only they may say the request came over https.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"
# Heartbeat files in memory, not on a container's overlay filesystem.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# The control socket (gunicornc) is per instance: gunicorn's default is one path per user, so
# a second instance on the host would take it over. GUNICORN_CONTROL_SOCKET names it;
# otherwise on_starting names it after the address the instance binds, in gunicorn's folder.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Client (as forwarded by the proxy), request, status, bytes, referrer, agent, time in ms.
access_log_format = '%({x-forwarded-for}i)s %(h)s %(t)s "%(r)s" %(s)s %(B)s "%(f)s" "%(a)s" %(M)sms'


def _control_socket_per_instance(server) -> None:
    """``<gunicorn's socket folder>/mmeval-<host>-<port>.ctl``, and ``…-<master PID>.ctl`` with
    ``GUNICORN_REUSE_PORT=1``, where instances share an address: two instances never share a
    control socket (``gunicornc -s PATH``)."""
    if os.environ.get("GUNICORN_CONTROL_SOCKET"):
        return
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    folder = runtime if runtime and os.path.isdir(runtime) else os.path.join(os.path.expanduser("~"), ".gunicorn")
    address = "_".join(server.cfg.bind)
    name = "mmeval-" + "".join(c if c.isalnum() or c in ".-" else "-" for c in address).strip("-")
    if server.cfg.reuse_port:
        name += f"-{os.getpid()}"  # on_starting runs in the master
    name += ".ctl"
    server.cfg.set("control_socket", os.path.join(folder, name))


def on_starting(server):
    """Read the Django settings once in the master: a missing or bad variable stops gunicorn
    with its one-line message, instead of every worker failing to boot in a loop. Name the
    instance's control socket (the arbiter opens it after this hook)."""
    _control_socket_per_instance(server)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmeval.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.SECRET_KEY  # noqa: B018 - evaluating settings is the point
    except ImproperlyConfigured as exc:
        print(f"mmeval: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
