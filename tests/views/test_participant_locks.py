"""A participant's requests lock only that participant's rows and the slots they take.

Another transaction holds locks on the rows every participant shares (the study, its model,
dataset, arms, items, predictions and explanations) or on another participant's rows, while a
participant goes through every page. With a short ``lock_timeout`` on the participant's
connection, a request that tried to lock a held row fails at once (a 503 from the middleware)
instead of hanging; so every page must answer as usual.

The holder takes ``FOR NO KEY UPDATE``, the lock an ``UPDATE`` of those rows takes (a
researcher saving the study, say). It conflicts with every lock a ``SELECT … FOR UPDATE`` or
``FOR SHARE`` would take, and not with the ``FOR KEY SHARE`` that Postgres itself takes on a
parent row when a child row (a participant, an answer) is inserted.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from annotations.models import (
    Assignment,
    Condition,
    Dataset,
    Explanation,
    Item,
    Participant,
    Prediction,
    RegisteredModel,
    Response,
    Slot,
    Study,
    StudyItem,
)
from annotations.services import participants as participants_service
from annotations.services.participants import invites_create
from annotations.services.studies import ConditionSpec
from tests.builders.studies import build_study, enter_and_start

pytestmark = pytest.mark.django_db(transaction=True)

SRC = re.compile(r'src="(/[^"]+)"')  # what the browser fetches (pictures come inside the page)
ARMS = [
    ConditionSpec("baseline"),
    ConditionSpec("ig", ["heatmap", "tokens"]),
    ConditionSpec("inter", ["interaction", "top_pairs", "share"]),
]


class RowLockHolder:
    """Locks rows in a transaction of its own (another thread, another connection) until
    released."""

    def __init__(self, lock):
        self._lock = lock
        self._locked, self._release = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.n_locked = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with transaction.atomic():
                self.n_locked = self._lock()
                self._locked.set()
                self._release.wait(timeout=120)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self._locked.set()
            connection.close()

    def __enter__(self) -> RowLockHolder:
        self._thread.start()
        assert self._locked.wait(timeout=30)
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._thread.join(timeout=30)


def _lock_shared_rows(study_pk: int):
    def lock() -> int:
        study = Study.objects.get(pk=study_pk)
        querysets = [
            Study.objects.filter(pk=study.pk),
            RegisteredModel.objects.filter(pk=study.model_id),
            Dataset.objects.filter(pk=study.dataset_id),
            Condition.objects.filter(study=study),
            Item.objects.filter(dataset_id=study.dataset_id),
            StudyItem.objects.filter(study=study),
            Prediction.objects.filter(model_id=study.model_id),
            Explanation.objects.filter(model_id=study.model_id),
        ]
        return sum(len(list(qs.select_for_update(no_key=True))) for qs in querysets)

    return lock


def _short_lock_timeout() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'")


def _walk_pages(client: Client, study, query: str) -> Participant:
    """Every participant page and media URL, start to finish; each must answer normally."""
    base = f"/s/{study.public_id}"
    assert client.get(f"{base}/{query}").status_code == 200
    assert client.post(f"{base}/consent/").status_code == 302
    assert client.get(f"{base}/instructions/").status_code == 200
    assert client.post(f"{base}/instructions/").status_code == 302
    participant = Participant.objects.get(public_id=client.session[f"participant:{study.public_id}"])
    for _ in range(50):
        page = client.get(f"{base}/item/")
        if page.status_code == 302:
            break
        assert page.status_code == 200, page.content[:300]
        for url in SRC.findall(page.content.decode()):
            assert client.get(url).status_code == 200, url
        assignment = participant.assignments.filter(status="active").order_by("position").first()
        if assignment.phase == "learning":
            assert client.post(f"{base}/learn/{assignment.public_id}/").status_code == 302
        else:
            answer = {"guess": assignment.expected_answer or assignment.candidate_order[0], "confidence": 3}
            assert client.post(f"{base}/item/{assignment.public_id}/", answer).status_code == 302
    assert client.get(f"{base}/survey/").status_code == 200
    survey = {"helpfulness": "4", "comment": "fine"} if participant.condition.views else {"comment": "fine"}
    assert client.post(f"{base}/survey/", survey).status_code == 302
    participant.refresh_from_db()
    assert participant.phase == Participant.Phase.DONE
    return participant


@pytest.fixture
def study(alice, tmp_path):
    return build_study(
        alice,
        tmp_path,
        n_dataset_items=24,
        n_items=8,
        items_per_participant=3,
        raters_per_item=2,
        conditions=ARMS,
        learning_items=1,
        attention_checks=1,
        pretest=True,
        survey=True,
        name="locks",
    )


def test_participants_go_through_while_the_shared_rows_are_locked(study):
    _short_lock_timeout()
    with RowLockHolder(_lock_shared_rows(study.pk)) as holder:
        assert holder.n_locked > 8 + 24
        done = [_walk_pages(Client(), study, f"?PROLIFIC_PID=w{k}&STUDY_ID=s&SESSION_ID=x{k}") for k in range(3)]
        # Returning through the platform link, and an invitation link, do not lock them either.
        again = Client().get(f"/s/{study.public_id}/?PROLIFIC_PID=w0&STUDY_ID=s&SESSION_ID=x0")
        assert again.status_code == 200 and b"Already completed" in again.content
        invited = Client()
        assert invited.get(f"/i/{invites_create(study=study, count=1)[0].token}/").status_code == 302
        done.append(_walk_pages(invited, study, ""))
    assert {p.condition.name for p in done[:3]} == {"baseline", "ig", "inter"}  # one block of the three arms
    assert Response.objects.filter(participant__in=done).count() == 4 * (3 + 3 + 1)


def test_a_participant_goes_through_while_another_holds_their_own_rows(study):
    """Someone mid-submit holds their participant row, their leases and the slots those hold."""
    other = enter_and_start(study, "busy")

    def lock_the_other_participant() -> int:
        rows = list(Participant.objects.select_for_update().filter(pk=other.pk))
        rows += list(Assignment.objects.select_for_update().filter(participant=other))
        rows += list(Slot.objects.select_for_update().filter(assignment__participant=other))
        return len(rows)

    _short_lock_timeout()
    with RowLockHolder(lock_the_other_participant) as holder:
        assert holder.n_locked == 1 + (3 + 1 + 4) + 3
        participant = _walk_pages(Client(), study, "?PROLIFIC_PID=free&STUDY_ID=s&SESSION_ID=y")
    assert Slot.objects.filter(assignment__participant=participant).count() == 3
    assert Slot.objects.filter(assignment__participant=other).count() == 3


def test_entering_and_starting_do_not_reclaim_leases_while_slots_are_free(study, monkeypatch):
    """Reclaiming locks other participants' expired leases: requests do it only when they
    found no free slot (beat does it every minute)."""
    calls = []
    real = participants_service.leases_reclaim
    monkeypatch.setattr(participants_service, "leases_reclaim", lambda **kw: calls.append(1) or real(**kw))
    stale = enter_and_start(study, "stale")
    Assignment.objects.filter(participant=stale).update(lease_expires_at=timezone.now() - timedelta(minutes=1))

    _walk_pages(Client(), study, "?PROLIFIC_PID=fresh&STUDY_ID=s&SESSION_ID=z")

    assert calls == []
    assert Assignment.objects.filter(participant=stale, status="active").count() == 8  # left for beat
