"""Run by ``test_faults_broker`` as a separate web process whose broker refuses or hangs
(CELERY_BROKER_URL points at a dead port): a researcher presses "Start precompute", and a
participant of another, live study goes through every page. Prints one JSON line.

    python -m tests.integration.broker_down_client STUDY_PK USERNAME PASSWORD LIVE_PUBLIC_ID
"""

from __future__ import annotations

import json
import os
import re
import sys
import time


def main(study_pk: str, username: str, password: str, live_public_id: str) -> dict:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmeval.settings")
    django.setup()
    from django.test import Client

    researcher = Client()
    assert researcher.login(username=username, password=password)
    started = time.monotonic()
    response = researcher.post(f"/studies/{study_pk}/precompute/", follow=True)
    seconds = time.monotonic() - started
    page = response.content.decode()

    participant = Client()
    statuses = [
        participant.get(f"/s/{live_public_id}/").status_code,
        participant.post(f"/s/{live_public_id}/consent/").status_code,
        participant.post(f"/s/{live_public_id}/instructions/").status_code,
    ]
    answered = 0
    for _ in range(50):  # bounded: a study holds a few items per participant
        item = participant.get(f"/s/{live_public_id}/item/")
        statuses.append(item.status_code)
        html = item.content.decode()
        action = re.search(r'action="(/s/[^"]+/item/[0-9a-f-]+/)"', html)
        if item.status_code != 200 or action is None:
            break
        guess = re.search(r'name="guess" value="([^"]+)"', html).group(1)
        posted = participant.post(action.group(1), {"guess": guess, "confidence": "3"})
        statuses.append(posted.status_code)
        answered += posted.status_code == 302
    return {
        "status": response.status_code,
        "seconds": seconds,
        "page": page,
        "participant_statuses": statuses,
        "answered": answered,
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
