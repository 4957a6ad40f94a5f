#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

Configuration mistakes (``DEBUG=maybe``, a ``DATABASE_URL`` that cannot be parsed or
reached) print one line naming the variable instead of a traceback; ``--traceback`` still
shows the traceback.
"""

import os
import re
import sys

#: ``scheme://user:password@`` -> ``scheme://user:***@``: a URL in an error must not show a password.
_PASSWORD_IN_URL = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s'\"]*:)[^@\s'\"]*@", re.IGNORECASE)


def _fail(message: str, status: int) -> None:
    sys.stderr.write("error: " + _PASSWORD_IN_URL.sub(r"\1***@", message) + "\n")
    sys.exit(status)


def main():
    """Run administrative tasks."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmeval.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Are you sure it's installed and "
            "available on your PYTHONPATH environment variable? Did you "
            "forget to activate a virtual environment?"
        ) from exc
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.db import OperationalError

    show_traceback = "--traceback" in sys.argv
    try:
        settings.INSTALLED_APPS  # noqa: B018 (read the settings now: a bad variable fails here, with its name)
    except ImproperlyConfigured as exc:
        if show_traceback:
            raise
        _fail(str(exc), 2)
    try:
        execute_from_command_line(sys.argv)
    except OperationalError as exc:  # the database named by DATABASE_URL is down, missing or refuses us
        if show_traceback:
            raise
        reason = " ".join(str(exc).split()) or type(exc).__name__
        url = os.environ.get("DATABASE_URL", "")
        where = f"the database at DATABASE_URL={url!r}" if url else "the SQLite database (DATABASE_URL is not set)"
        hint = " (run `python manage.py migrate` first)" if "no such table" in reason else ""
        _fail(f"cannot use {where}: {reason}{hint}", 1)
    except BrokenPipeError:  # `manage.py export_study 1 | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
