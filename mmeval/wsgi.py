"""The WSGI application (gunicorn ``mmeval.wsgi``; runserver loads it too)."""

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmeval.settings")

try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:  # a missing or bad variable: its one line, not a traceback
    sys.exit(f"mmeval: {exc}")

from django.conf import settings  # noqa: E402

if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
    from mmeval.database import database_read_timeout_install

    # The web role: a database that stops answering gives the retry page in seconds, not a
    # worker killed by gunicorn's timeout (mmeval/database.py).
    database_read_timeout_install(seconds=settings.DB_READ_TIMEOUT)

# A participant's last answer computes their exclusion flags with the analysis package
# (pandas, scipy: about a second to import). Import it while the server starts, not inside
# the first finishing participant's request.
import annotations.analysis  # noqa: E402,F401
