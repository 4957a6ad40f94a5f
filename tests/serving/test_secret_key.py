"""With no SECRET_KEY, processes started together all end up with one generated key."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys

from mmeval.secret_key import secret_key_load_or_create

from .conftest import REPO

N_PROCESSES = 12
ROUNDS = 5


def _race(barrier, path, results) -> None:
    barrier.wait()  # every process reaches the check-then-create at the same moment
    results.put(secret_key_load_or_create(path=path))


def test_processes_started_at_once_agree_on_the_generated_key(tmp_path):
    context = multiprocessing.get_context("fork")
    for round_number in range(ROUNDS):
        path = tmp_path / f"round-{round_number}" / "secret_key"
        barrier, results = context.Barrier(N_PROCESSES), context.Queue()
        processes = [context.Process(target=_race, args=(barrier, path, results)) for _ in range(N_PROCESSES)]
        for process in processes:
            process.start()
        keys = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0

        assert len(set(keys)) == 1, f"round {round_number}: {len(set(keys))} different keys"
        assert keys[0] == path.read_text().strip()
        assert len(keys[0]) >= 50
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in path.parent.iterdir()) == ["secret_key"], "a candidate file was left behind"


def test_an_existing_key_is_kept(tmp_path):
    path = tmp_path / "secret_key"
    first = secret_key_load_or_create(path=path)

    assert secret_key_load_or_create(path=path) == first


def test_settings_read_the_key_file_shared_by_separate_interpreters(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "MMEVAL_PRODUCTION")}
    env["SECRET_KEY_FILE"] = str(tmp_path / "secret_key")
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={**env, "DJANGO_SETTINGS_MODULE": "mmeval.settings"},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    keys = {p.communicate(timeout=120)[0].strip() for p in processes}

    assert keys == {(tmp_path / "secret_key").read_text().strip()}
