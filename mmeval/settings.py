"""mmeval settings, read from the environment.

Defaults give an embedded setup that just works: SQLite and in-process tasks when no
``DATABASE_URL`` or ``CELERY_BROKER_URL`` is set. Bad values fail at start-up and name the
variable.
"""

import os
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


DEBUG = envbool("DEBUG", False)
def _secret_key() -> str:
    """SECRET_KEY, or a random key kept in var/secret_key: never a key known to the public,
    since exports pseudonymise platform IDs with an HMAC keyed from it."""
    key = os.environ.get("SECRET_KEY", "")
    if key:
        return key
    path = BASE_DIR / "var" / "secret_key"
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = [h.strip() for h in envstr("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h.strip()]
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
    "annotations",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "annotations.middleware.DatabaseUnavailableMiddleware",  # before sessions: it sees their errors too
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    try:
        _db = dj_database_url.parse(_DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 0))
    except Exception as exc:
        raise ImproperlyConfigured(f"DATABASE_URL={_DATABASE_URL!r} cannot be parsed: {exc}") from None
    if not _db.get("ENGINE"):
        raise ImproperlyConfigured(f"DATABASE_URL={_DATABASE_URL!r} names an unknown database engine")
else:
    _db = {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "var" / "db.sqlite3",
           "OPTIONS": {"timeout": 20}}
DATABASES = {"default": _db}

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

# Uploaded datasets and rendered explanation views. Never served directly to participants:
# they go through views that check access, so no file name can leak a label.
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
MEDIA_URL = "/media/"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "studies"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_AGE = 60 * 60 * 24 * 14
# MTurk shows the study inside a cross-site frame: its cookies must be SameSite=None; Secure,
# which needs HTTPS. Off by default so the embedded demo works over plain HTTP.
if envbool("CROSS_SITE_COOKIES", False):
    SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "None"
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
CSRF_FAILURE_VIEW = "annotations.views_participant.csrf_failure"

# --- Celery (Saleor-style wiring: broker from settings, eager only without a broker) ---
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = envstr("CELERY_DEFAULT_QUEUE", "mmeval")
CELERY_GPU_QUEUE = envstr("CELERY_GPU_QUEUE", "mmeval-gpu")
CELERY_TASK_ROUTES = {"workers.tasks.precompute_study": {"queue": CELERY_GPU_QUEUE}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Compute engine knobs.
MMEVAL_DEVICE = envstr("MMEVAL_DEVICE", "cpu")
# Adapters run inside the server and the workers: only modules under these prefixes may be
# registered. An operator installs a researcher's package and adds its prefix here.
MMEVAL_ADAPTER_PREFIXES = [p.strip() for p in envstr("MMEVAL_ADAPTER_PREFIXES", "workers.engine.demo.,adapters.").split(",")
                           if p.strip()]
MMEVAL_PRECOMPUTE_BATCH_SIZE = envint("MMEVAL_PRECOMPUTE_BATCH_SIZE", 64, minimum=1)
MMEVAL_TASK_SOFT_TIME_LIMIT = envint("MMEVAL_TASK_SOFT_TIME_LIMIT", 60 * 30, minimum=1)
MMEVAL_TASK_TIME_LIMIT = envint("MMEVAL_TASK_TIME_LIMIT", 60 * 35, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {"TITLE": "mmeval API", "VERSION": "1", "SERVE_INCLUDE_SCHEMA": False}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "WARNING")},
}

CELERY_BEAT_SCHEDULE = {
    "reclaim-expired-leases": {"task": "workers.tasks.reclaim_expired_leases", "schedule": 60.0},
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
    CACHES = {"default": {
        "BACKEND": "annotations.cache.TolerantRedisCache", "LOCATION": _CACHE_URL, "KEY_PREFIX": "mmeval",
        # A hung Redis holds a request for at most about this long per call.
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }}
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SESSION_ENGINE = "django.contrib.sessions.backends.db"
# Participant media handed to the proxy instead of streamed (annotations/views_participant.py):
# nginx's internal location prefix (X-Accel-Redirect), or X-Sendfile for Apache/lighttpd.
MMEVAL_MEDIA_X_ACCEL_PREFIX = envstr("MMEVAL_MEDIA_X_ACCEL_PREFIX", "")
MMEVAL_MEDIA_X_SENDFILE = envbool("MMEVAL_MEDIA_X_SENDFILE", False)
