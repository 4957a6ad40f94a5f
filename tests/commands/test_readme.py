"""The README names what runs: every ``manage.py`` command and option it shows exists, every
variable in its configuration table is read by the code, the ``./run`` entry points and
worker queues are the real ones, and the demo study it describes is the one built."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.core.management import get_commands, load_command_class

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _options(command: str) -> set[str]:
    parser = load_command_class(get_commands()[command], command).create_parser("manage.py", command)
    return {option for action in parser._actions for option in action.option_strings}


def _manage_py_uses() -> list[tuple[str, list[str]]]:
    """Each ``manage.py COMMAND …`` the README shows, with the options up to the end of its
    code span, table cell, line or comment."""
    return [
        (match.group(1), re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", match.group(2)))
        for match in re.finditer(r"manage\.py (\w+)([^`|;#\n]*)", README)
    ]


def test_every_command_and_option_the_readme_shows_exists():
    uses = _manage_py_uses()
    assert {"demo", "import_dataset", "register_model", "launch_study", "export_study", "analyze", "explain"} <= {
        command for command, _ in uses
    }
    known = get_commands()
    for command, options in uses:
        assert command in known, f"README shows `manage.py {command}`, which does not exist"
        missing = set(options) - _options(command)
        assert not missing, f"README shows `manage.py {command}` with {sorted(missing)}, which it does not take"


def test_the_demo_options_the_readme_names_exist():
    demo_flags = set(re.findall(r"\./run demo (--[a-z-]+)", README))
    assert {"--no-serve", "--addrport"} <= demo_flags
    assert demo_flags <= _options("demo")


def test_every_configuration_variable_is_read_by_the_code():
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names = {
        name for row in re.findall(r"^\| ([^|]+) \|", section, re.M) for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)
    }
    assert {"DATABASE_URL", "SECRET_KEY", "MMEVAL_WATCHDOG_SECONDS", "CACHE_URL"} <= names
    code = "\n".join(
        p.read_text() for folder in ("mmeval", "annotations", "workers") for p in (REPO / folder).rglob("*.py")
    )
    unread = sorted(n for n in names if not re.search(rf"[\"']{n}[\"']", code))
    assert not unread, f"the README's configuration table names variables no code reads: {unread}"


def test_the_run_script_entry_points_and_queues_are_the_real_ones():
    run = (REPO / "run").read_text()
    entry_points = set(re.findall(r"^  (\w+)\)$", run, re.M))
    assert set(re.findall(r"\./run (\w+)", README)) <= entry_points
    workers = re.findall(r"celery -A mmeval worker -Q (\S+)", README)
    queues = {q for w in workers for q in w.split(",")}
    assert queues == {settings.CELERY_TASK_DEFAULT_QUEUE, settings.CELERY_GPU_QUEUE}
    assert "celery -A mmeval worker -Q mmeval -B" in README  # beat: leases and the watchdogs
    beat = {
        "reclaim-expired-leases": "reclaims expired leases",
        "precompute-watchdog": "precompute watchdog",
        "model-report-watchdog": "model-report watchdog",
    }
    assert set(beat) == set(settings.CELERY_BEAT_SCHEDULE)
    line = next(line for line in README.splitlines() if "celery -A mmeval worker -Q mmeval -B" in line)
    assert all(words in line for words in beat.values()), line
    assert "-q -r requirements.txt" not in run and "--progress-bar on" in run  # pip shows its progress


def test_the_demo_study_the_readme_describes_is_the_one_built():
    demo = (REPO / "annotations" / "management" / "commands" / "demo.py").read_text()
    arms = re.findall(r'ConditionSpec\(name="([^"]+)"', demo)
    assert len(arms) == 3 and "A three-arm study" in README
    assert all(f"(`{arm}`)" in README for arm in arms), arms
