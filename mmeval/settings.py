"""mmeval settings, read from the environment.

Defaults give an embedded setup that just works: SQLite and in-process tasks when no
``DATABASE_URL`` or ``CELERY_BROKER_URL`` is set. Bad values fail at start-up and name the
variable.

``MMEVAL_PRODUCTION=1`` is the production mode: ``SECRET_KEY``, ``ALLOWED_HOSTS`` and
``DATABASE_URL`` must be set (start-up fails with one line naming what is missing), DEBUG
must be off, and HTTPS is enforced behind a TLS proxy (HSTS, secure cookies, redirect to
https except the health endpoints), so ``manage.py check --deploy`` reports nothing.

How the pieces are deployed: docs/DESIGN.md, "Deployment".
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}")
    return value


def envstr(name: str, default: str) -> str:
    return os.environ.get(name, default)


def envlist(name: str, default: str) -> list[str]:
    """A comma-separated list; blanks dropped."""
    return [part.strip() for part in envstr(name, default).split(",") if part.strip()]


# --- Production mode ---
PRODUCTION = envbool("MMEVAL_PRODUCTION", False)
_PRODUCTION_NEEDS = ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL")
if PRODUCTION:
    _missing = [name for name in _PRODUCTION_NEEDS if not os.environ.get(name, "").strip()]
    if _missing:
        raise ImproperlyConfigured(f"MMEVAL_PRODUCTION=1 needs {', '.join(_missing)} set in the environment")
    if not envlist("ALLOWED_HOSTS", ""):
        raise ImproperlyConfigured(
            f"ALLOWED_HOSTS={os.environ['ALLOWED_HOSTS']!r} names no host; MMEVAL_PRODUCTION=1 needs the site's host name"
        )
    _key = os.environ["SECRET_KEY"]
    # Django's check --deploy asks as much: sessions, CSRF tokens and the exports' pseudonyms hang on it.
    if len(_key) < 50 or len(set(_key)) < 5:
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak for MMEVAL_PRODUCTION=1: it needs at least 50 characters, 5 of them "
            f"different (it has {len(_key)}, {len(set(_key))} different); generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`"
        )

DEBUG = envbool("DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG=1 is not allowed with MMEVAL_PRODUCTION=1 (it shows tracebacks and settings)")


def _secret_key() -> str:
    """SECRET_KEY, or a random key kept in var/secret_key (SECRET_KEY_FILE): never a key
    known to the public, since exports pseudonymise platform IDs with an HMAC keyed from it.
    Every process started together reads the same generated key (mmeval/secret_key.py)."""
    key = os.environ.get("SECRET_KEY", "")
    if key:
        return key
    from mmeval.secret_key import secret_key_load_or_create

    return secret_key_load_or_create(path=Path(envstr("SECRET_KEY_FILE", str(BASE_DIR / "var" / "secret_key"))))


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
SITE_URL = envstr("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our own static files
    "axes",
    "annotations",
    "workers",
]

MIDDLEWARE = [
    # /healthz and /readyz answer before host validation and the https redirect, so the
    # orchestrator can probe the container directly (mmeval/health.py).
    "mmeval.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "mmeval.middleware.StaticFilesMiddleware",  # whitenoise
    "mmeval.middleware.RejectNulBytesMiddleware",
    "annotations.middleware.DatabaseUnavailableMiddleware",  # before sessions: it sees their errors too
    "annotations.middleware.SessionMiddleware",  # Django's; an interrupted save gets the retry page
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a sign-in lockout into the lockout page
]

ROOT_URLCONF = "mmeval.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "mmeval.wsgi.application"

_DATABASE_URL = os.environ.get("DATABASE_URL", "")
if _DATABASE_URL:
    # Persistent connections: a gunicorn worker keeps its connection between requests
    # (checked before reuse) instead of opening one per request. Size Postgres'
    # max_connections to web workers + worker processes + headroom (README).
    try:
        _db = dj_database_url.parse(
            _DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 60, minimum=0), conn_health_checks=True
        )
    except Exception as exc:
        raise ImproperlyConfigured(f"DATABASE_URL={_DATABASE_URL!r} cannot be parsed: {exc}") from None
    if not _db.get("ENGINE"):
        raise ImproperlyConfigured(f"DATABASE_URL={_DATABASE_URL!r} names an unknown database engine")
    if "postgresql" in _db["ENGINE"]:
        # A database that does not answer fails a request (and /readyz) in seconds, not minutes.
        # Keepalives and tcp_user_timeout end a kept connection whose peer vanished (host gone,
        # network cut) in every process; a peer that hangs but still acknowledges is bounded by
        # DB_READ_TIMEOUT in the web role (mmeval/database.py, installed by mmeval/wsgi.py).
        _options = _db.setdefault("OPTIONS", {})
        _options.setdefault("connect_timeout", envint("DB_CONNECT_TIMEOUT", 5, minimum=1))
        _options.setdefault("keepalives", 1)
        _options.setdefault("keepalives_idle", envint("DB_KEEPALIVES_IDLE", 30, minimum=1))
        _options.setdefault("keepalives_interval", envint("DB_KEEPALIVES_INTERVAL", 5, minimum=1))
        _options.setdefault("keepalives_count", envint("DB_KEEPALIVES_COUNT", 3, minimum=1))
        _options.setdefault("tcp_user_timeout", 1000 * envint("DB_TCP_USER_TIMEOUT", 30, minimum=0))
else:
    _db = {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "var" / "db.sqlite3", "OPTIONS": {"timeout": 20}}
DATABASES = {"default": _db}
# Web processes only: a wait for Postgres that hears nothing for this many seconds closes the
# connection and gives the retry page (0: wait as long as it takes).
DB_READ_TIMEOUT = envint("DB_READ_TIMEOUT", 10, minimum=0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# whitenoise serves static files from the web process, under gunicorn or runserver alike.
# Production: `manage.py collectstatic` into STATIC_ROOT, compressed, with content-hashed
# names cached forever. Otherwise it serves straight from the source folders.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION

# Uploaded datasets and rendered explanation views. Never served directly to participants:
# they go through views that check access, so no file name can leak a label.
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
MEDIA_URL = "/media/"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "studies"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_AGE = 60 * 60 * 24 * 14
# MTurk shows the study inside a cross-site frame: its cookies must be SameSite=None; Secure,
# which needs HTTPS. On in production; off by default so the embedded demo works over plain HTTP.
if envbool("CROSS_SITE_COOKIES", PRODUCTION):
    SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "None"
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
CSRF_FAILURE_VIEW = "annotations.views_participant.csrf_failure"

# The worker sites that show an MTurk ExternalQuestion in a frame (CSP frame-ancestors of
# the participant pages; every other page keeps X-Frame-Options: DENY): worker.mturk.com
# (the worker site), www.mturk.com (the classic worker site) and workersandbox.mturk.com
# (the sandbox worker site).
MMEVAL_FRAME_ANCESTORS = envlist(
    "MMEVAL_FRAME_ANCESTORS", "https://worker.mturk.com,https://www.mturk.com,https://workersandbox.mturk.com"
)

# --- HTTPS and proxy (production) ---
# gunicorn runs behind a TLS proxy (nginx, Caddy, a load balancer) that sets
# X-Forwarded-Proto and appends the client to X-Forwarded-For; only the proxy may reach it.
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz/?$", r"^readyz/?$"]  # probes speak plain HTTP to the container
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365, minimum=0)
    # The study runs on its own host name; subdomains and the preload list are opt-out
    # (set 0) for operators who share the domain with plain-HTTP sites.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")
# Reverse proxies in front of the web server that append to X-Forwarded-For: the client's
# address (sign-in throttling) is that many entries from the right.
MMEVAL_PROXY_COUNT = envint("MMEVAL_PROXY_COUNT", 1 if PRODUCTION else 0, minimum=0)

# --- Sign-in throttling (django-axes) ---
# After MMEVAL_LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that
# pair is locked out for the cool-off, on the sign-in page, the admin and /api/token/.
AUTHENTICATION_BACKENDS = ["mmeval.auth.ThrottledSignInBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = envint("MMEVAL_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("MMEVAL_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "mmeval.auth.client_ip"
AXES_LOCKOUT_CALLABLE = "mmeval.auth.lockout_response"

# --- Participant entry limits (annotations/services/entry_limits.py) ---
# New participants per client address per window (generous: a lab behind one address gets
# in), entries per Prolific/MTurk ID per window (strict), and the share of a study's places
# one address may take. 0 (or a share of 100) turns a limit off. A refusal is a 429 page.
MMEVAL_ENTRY_WINDOW_SECONDS = envint("MMEVAL_ENTRY_WINDOW_SECONDS", 600, minimum=1)
MMEVAL_ENTRY_ADDRESS_LIMIT = envint("MMEVAL_ENTRY_ADDRESS_LIMIT", 30, minimum=0)
MMEVAL_ENTRY_PLATFORM_ID_LIMIT = envint("MMEVAL_ENTRY_PLATFORM_ID_LIMIT", 10, minimum=0)
MMEVAL_ENTRY_ADDRESS_SHARE_PERCENT = envint("MMEVAL_ENTRY_ADDRESS_SHARE_PERCENT", 25, minimum=1)
if MMEVAL_ENTRY_ADDRESS_SHARE_PERCENT > 100:
    raise ImproperlyConfigured(
        f"MMEVAL_ENTRY_ADDRESS_SHARE_PERCENT={MMEVAL_ENTRY_ADDRESS_SHARE_PERCENT} must be at most 100"
    )

# --- Limits on uploads (dataset import) ---
# A bigger request body is refused as it streams in (never stored); zip members are checked
# from the zip's directory before anything is extracted. Set the proxy's body limit (nginx
# client_max_body_size) to MMEVAL_UPLOAD_MAX_BYTES too.
MMEVAL_UPLOAD_MAX_BYTES = envint("MMEVAL_UPLOAD_MAX_BYTES", 200 * 2**20, minimum=1)
MMEVAL_ZIP_MAX_MEMBERS = envint("MMEVAL_ZIP_MAX_MEMBERS", 100_000, minimum=1)
MMEVAL_ZIP_MAX_MEMBER_BYTES = envint("MMEVAL_ZIP_MAX_MEMBER_BYTES", 100 * 2**20, minimum=1)
MMEVAL_ZIP_MAX_TOTAL_BYTES = envint("MMEVAL_ZIP_MAX_TOTAL_BYTES", 2**30, minimum=1)
MMEVAL_ZIP_MAX_RATIO = envint("MMEVAL_ZIP_MAX_RATIO", 100, minimum=1)
MMEVAL_IMAGE_MAX_PIXELS = envint("MMEVAL_IMAGE_MAX_PIXELS", 40_000_000, minimum=1)  # engine's IMAGE_MAX_PIXELS
FILE_UPLOAD_HANDLERS = [
    "mmeval.uploads.CappedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# --- Celery (Saleor-style wiring: broker from settings, eager only without a broker) ---
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A task is acknowledged after it ran, and given back if its worker process dies, so a
# killed worker loses no work (every task is idempotent).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = envstr("CELERY_DEFAULT_QUEUE", "mmeval")
CELERY_GPU_QUEUE = envstr("CELERY_GPU_QUEUE", "mmeval-gpu")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Time limits of one precompute chunk (one engine batch). A chunk past the soft limit is
# split in two, so they bound a chunk, never a study.
MMEVAL_TASK_SOFT_TIME_LIMIT = envint("MMEVAL_TASK_SOFT_TIME_LIMIT", 60 * 10, minimum=1)
MMEVAL_TASK_TIME_LIMIT = envint("MMEVAL_TASK_TIME_LIMIT", 60 * 12, minimum=1)
# Unacknowledged messages of a worker killed outright come back after this many seconds;
# the watchdog below usually hands the work out sooner. Longer than any chunk may run.
MMEVAL_BROKER_VISIBILITY_TIMEOUT = envint("MMEVAL_BROKER_VISIBILITY_TIMEOUT", MMEVAL_TASK_TIME_LIMIT + 300, minimum=1)
# A broker that refuses or hangs must not hold a web request: publishing gives up after
# about MMEVAL_BROKER_TIMEOUT seconds and the job records why (services/precompute.py).
MMEVAL_BROKER_TIMEOUT = envint("MMEVAL_BROKER_TIMEOUT", 2, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": MMEVAL_BROKER_VISIBILITY_TIMEOUT,
    "socket_timeout": MMEVAL_BROKER_TIMEOUT,
    "socket_connect_timeout": MMEVAL_BROKER_TIMEOUT,
    "max_retries": 1,
}
CELERY_BROKER_CONNECTION_TIMEOUT = MMEVAL_BROKER_TIMEOUT
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
# Precompute chunks beat every MMEVAL_CHUNK_HEARTBEAT_SECONDS; one silent for
# MMEVAL_CHUNK_STALE_SECONDS belongs to a dead worker and is handed out again (at most
# MMEVAL_CHUNK_MAX_ATTEMPTS times). The watchdog runs every MMEVAL_WATCHDOG_SECONDS, so a
# killed worker's chunk restarts within stale + watchdog seconds once any worker is up.
MMEVAL_CHUNK_HEARTBEAT_SECONDS = envint("MMEVAL_CHUNK_HEARTBEAT_SECONDS", 10, minimum=1)
MMEVAL_CHUNK_STALE_SECONDS = envint("MMEVAL_CHUNK_STALE_SECONDS", 60, minimum=2)
MMEVAL_CHUNK_MAX_ATTEMPTS = envint("MMEVAL_CHUNK_MAX_ATTEMPTS", 3, minimum=1)
MMEVAL_WATCHDOG_SECONDS = envint("MMEVAL_WATCHDOG_SECONDS", 30, minimum=1)
# Pending chunks of a job with no activity for this long are published again (a message
# lost with a restarted Redis); duplicates only cost a refused claim.
MMEVAL_REDISPATCH_SECONDS = envint("MMEVAL_REDISPATCH_SECONDS", 600, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "reclaim-expired-leases": {"task": "workers.tasks.reclaim_expired_leases", "schedule": 60.0},
    "precompute-watchdog": {
        "task": "workers.tasks.precompute_watchdog_task",
        "schedule": float(MMEVAL_WATCHDOG_SECONDS),
    },
    "model-report-watchdog": {
        "task": "workers.tasks.model_report_watchdog_task",
        "schedule": float(MMEVAL_WATCHDOG_SECONDS),
    },
}

# Compute engine knobs.
MMEVAL_DEVICE = envstr("MMEVAL_DEVICE", "cpu")
# Torch threads per worker process (0: torch's default). One per process when several
# single-threaded workers share a CPU machine.
MMEVAL_TORCH_THREADS = envint("MMEVAL_TORCH_THREADS", 0, minimum=0)
# Adapters run inside the server and the workers: only modules under these prefixes may be
# registered. An operator installs a researcher's package and adds its prefix here. The
# bundled demo and the Hugging Face folder adapters (workers.engine.hf) are allowed by default.
MMEVAL_ADAPTER_PREFIXES = [
    p.strip()
    for p in envstr("MMEVAL_ADAPTER_PREFIXES", "workers.engine.demo.,workers.engine.hf.,adapters.").split(",")
    if p.strip()
]
# Registering a model creates, loads and checks its adapter in a child process stopped after
# this long (annotations/services/registry.py): below gunicorn's timeout, so the page can say so.
MMEVAL_REGISTER_TIMEOUT_SECONDS = envint("MMEVAL_REGISTER_TIMEOUT_SECONDS", 90, minimum=1)
MMEVAL_PRECOMPUTE_BATCH_SIZE = envint("MMEVAL_PRECOMPUTE_BATCH_SIZE", 64, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The one description of the API's schema (served at /api/schema/, shown at /api/docs/).
SPECTACULAR_SETTINGS = {
    "TITLE": "mmeval researcher API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "DESCRIPTION": "Studies of multimodal model explanations: create from a spec, precompute, launch, "
    "watch progress, read the analysis, download CSV exports. Authenticate with "
    "`Authorization: Token <key>` (POST /api/token/ with username and password).",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "WARNING")},
}

# --- Participant path: caches and sessions ---
# Several web processes must agree on every session. With a shared cache (CACHE_URL, else
# REDIS_URL: Django's Redis backend, degrading to a miss when Redis fails) sessions are read
# from it and written through to the database (cached_db), so a participant page costs no
# session query. Without one, a per-process cache would serve stale sessions after another
# process changed them, so sessions then stay in the database alone.
_CACHE_URL = os.environ.get("CACHE_URL", "") or os.environ.get("REDIS_URL", "")
if _CACHE_URL:
    if not _CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"CACHE_URL={_CACHE_URL!r} is not a redis://, rediss:// or unix:// URL")
    CACHES = {
        "default": {
            "BACKEND": "annotations.cache.TolerantRedisCache",
            "LOCATION": _CACHE_URL,
            "KEY_PREFIX": "mmeval",
            # A hung Redis holds a request for at most about this long per call.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SESSION_ENGINE = "django.contrib.sessions.backends.db"
# Participant media handed to the proxy instead of streamed (annotations/views_participant.py):
# nginx's internal location prefix (X-Accel-Redirect), or X-Sendfile for Apache/lighttpd.
MMEVAL_MEDIA_X_ACCEL_PREFIX = envstr("MMEVAL_MEDIA_X_ACCEL_PREFIX", "")
MMEVAL_MEDIA_X_SENDFILE = envbool("MMEVAL_MEDIA_X_SENDFILE", False)

# The dashboard's analysis is recomputed in the background (services/dashboard.py): a refresh
# asked for waits this long before its task runs, so a burst of responses costs one computation.
MMEVAL_DASHBOARD_DEBOUNCE_SECONDS = envint("MMEVAL_DASHBOARD_DEBOUNCE_SECONDS", 10, minimum=0)
