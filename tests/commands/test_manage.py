"""``manage.py`` itself: a bad environment variable or an unusable database is one line
naming the variable, with a password in a URL masked, and no traceback (``--traceback``
still gives one). These run a fresh process, as a user does."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.commandline import manage_py

NOT_BOOLEAN = "DEBUG='maybe' is not a boolean (use 1/0, true/false, yes/no)"


def test_a_bad_boolean_is_one_line_and_exit_status_2():
    for command in (["check"], ["help"], ["export_study", "1"]):
        done = manage_py(*command, env={"DEBUG": "maybe"})
        assert (done.returncode, done.stdout, done.stderr) == (2, "", f"error: {NOT_BOOLEAN}\n"), command


def test_traceback_still_shows_the_traceback():
    done = manage_py("check", "--traceback", env={"DEBUG": "maybe"})
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):\n")
    assert done.stderr.endswith(f"ImproperlyConfigured: {NOT_BOOLEAN}\n")


def test_an_unparsable_database_url_is_one_line_with_the_password_masked():
    done = manage_py("migrate", env={"DATABASE_URL": "postgress://mmeval:hunter2@db.example:5432/mmeval"})
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(
        "error: DATABASE_URL='postgress://mmeval:***@db.example:5432/mmeval' cannot be "
        "parsed: Scheme 'postgress://' is unknown."
    )
    assert done.stderr.count("\n") == 1 and "hunter2" not in done.stderr


@pytest.mark.needs_services  # talks to the Postgres server, not to the test database
def test_a_database_that_does_not_exist_is_one_line_naming_database_url():
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}:hunter2@{db['HOST']}:{db['PORT']}/mmeval_cli_no_such_database"
    done = manage_py("export_study", "1", env={"DATABASE_URL": url})
    masked = url.replace("hunter2", "***")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(f"error: cannot use the database at DATABASE_URL='{masked}': connection to server at")
    assert done.stderr.endswith('database "mmeval_cli_no_such_database" does not exist\n')
    assert done.stderr.count("\n") == 1 and "hunter2" not in done.stderr


def test_a_reader_that_stops_early_gets_no_traceback():
    """`manage.py export_study 1 | head`: the pipe closes under the command's feet."""
    import subprocess
    import sys

    from tests.commandline import ROOT

    many_lines = "import sys\nfor i in range(200000): sys.stdout.write(f'row {i}\\n')\nsys.stdout.flush()"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", many_lines],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.read(10)
    process.stdout.close()  # the reader leaves, like `head`
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert stderr == ""
