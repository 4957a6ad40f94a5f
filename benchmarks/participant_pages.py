"""What one participant walk costs in process: requests, CPU and bytes per route.

    python manage.py bench_participant_pages --study <public id> --walks 6

Django-side (the command is a thin wrapper): ``--walks`` participants walk a live study one
after another through Django's test client, in this process, the way ``manage.py loadtest``'s
simulated browsers do (the study link as a Prolific participant, consent, instructions, every
item page and every URL it loads by itself, the answers, practice acknowledgements, survey
and done page). Per route: the requests per walk, the median and total CPU of this process per
request (``time.process_time``: Django, the template, the ORM's side of each query; not
Postgres' or Redis' own CPU), and the bytes of the responses, as sent and gzipped (what a
compressing proxy would send). One warm-up walk first (``--warmup``) is not counted. Use a
study made by ``loadtest --setup``; each walk, warm-up included, takes one of its slots.
"""

from __future__ import annotations

import gzip
import html
import random
import statistics
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.test import Client

from benchmarks.loadtest import _CODE, _FORM, _GUESS, _INSTRUCTED, _SRC, MAX_PAGES_PER_WALK, ROUTES, _page_route


@dataclass
class RouteCost:
    cpu_ms: list[float] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    gzip_bytes: list[int] = field(default_factory=list)  # as a compressing proxy would send them


@dataclass
class WalkCosts:
    walks: int = 0
    routes: dict[str, RouteCost] = field(default_factory=lambda: defaultdict(RouteCost))

    def table(self) -> str:
        head = (
            f"{'route':<18} {'per walk':>8} {'CPU ms p50':>10} {'CPU ms/walk':>11} {'kB p50':>8} {'kB max':>8} "
            f"{'kB/walk':>8} {'gz kB/walk':>10}"
        )
        lines = [head, "-" * len(head)]
        walks = max(self.walks, 1)
        total_requests = total_cpu = total_bytes = total_gzip = 0.0
        for route in [r for r in ROUTES if r in self.routes] + sorted(set(self.routes) - set(ROUTES)):
            cost = self.routes[route]
            n, cpu, size, gz = len(cost.cpu_ms), sum(cost.cpu_ms), sum(cost.bytes), sum(cost.gzip_bytes)
            total_requests, total_cpu = total_requests + n, total_cpu + cpu
            total_bytes, total_gzip = total_bytes + size, total_gzip + gz
            lines.append(
                f"{route:<18} {n / walks:>8.1f} {statistics.median(cost.cpu_ms):>10.2f} {cpu / walks:>11.1f} "
                f"{statistics.median(cost.bytes) / 1000:>8.1f} {max(cost.bytes) / 1000:>8.1f} "
                f"{size / walks / 1000:>8.0f} {gz / walks / 1000:>10.0f}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'all':<18} {total_requests / walks:>8.1f} {'':>10} {total_cpu / walks:>11.1f} {'':>8} {'':>8} "
            f"{total_bytes / walks / 1000:>8.0f} {total_gzip / walks / 1000:>10.0f}   over {self.walks} walks"
        )
        return "\n".join(lines)


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def walk_costs(*, study: str, walks: int, seed: int = 0, warmup: int = 1) -> WalkCosts:
    """``walks`` participants through the live study ``study`` (its public ID), one at a time,
    after ``warmup`` walks that are not counted: a server process has long paid for its first
    imports and caches (the first survey answer imports the analysis library, 0.9 s) and loads
    its middleware once (whitenoise's index of the static files, about 10 ms), so neither is
    charged to a route here."""
    costs, rng = WalkCosts(), random.Random(seed)
    base = f"/s/{study}/"

    def request(client: Client, route: str, method: str, url: str, data: dict | None = None):
        started = time.process_time()
        response = client.get(url) if method == "GET" else client.post(url, data or {})
        body = _body(response)
        costs.routes[route].cpu_ms.append(1000 * (time.process_time() - started))
        costs.routes[route].bytes.append(len(body))
        costs.routes[route].gzip_bytes.append(len(gzip.compress(body, compresslevel=6)))
        return response, body.decode("utf-8", "replace")

    handler = Client().handler  # the middleware is loaded once, as in a server process
    for walk in range(warmup + walks):
        if walk == warmup:
            costs = WalkCosts()  # what the warm-up walks cost is dropped
        client = Client()  # each walk a new browser (its own cookies)
        client.handler = handler
        query = urlencode({"PROLIFIC_PID": f"bench-{uuid.uuid4().hex[:12]}", "STUDY_ID": "bench", "SESSION_ID": "1"})
        response, page = request(client, "entry GET", "GET", f"{base}?{query}")
        if response.status_code != 200 or (code := _CODE.search(page)):
            raise RuntimeError(f"the study link answered {response.status_code}: {code.group(1) if code else ''}")
        response, page = request(client, "consent POST", "POST", f"{base}consent/")
        for _ in range(MAX_PAGES_PER_WALK):
            if response.status_code in (301, 302, 303):
                location = response["Location"]
                if not location.startswith("/"):
                    break
                response, page = request(client, _page_route(location, study), "GET", location)
                continue
            if response.status_code != 200:
                raise RuntimeError(f"status {response.status_code}: {page[:200]!r}")
            if 'id="completion-code"' in page or 'id="mturk-form"' in page:
                break
            if (code := _CODE.search(page)) is not None:
                raise RuntimeError(f"the walk ended on {code.group(1)!r}")
            if 'id="survey-form"' in page:
                response, page = request(client, "survey POST", "POST", f"{base}survey/", {"helpfulness": "3"})
            elif (form := _FORM.search(page)) is not None:
                for url in dict.fromkeys(html.unescape(u) for u in _SRC.findall(page)):
                    request(client, "media GET", "GET", url)
                action = html.unescape(form.group(1))
                if form.group(2) == "learn-form":
                    response, page = request(client, "learn POST", "POST", action)
                else:
                    instructed = _INSTRUCTED.search(page)
                    guess = html.unescape(instructed.group(1)) if instructed else rng.choice(_GUESS.findall(page))
                    data = {"guess": html.unescape(guess), "confidence": str(rng.randint(1, 5))}
                    response, page = request(client, "answer POST", "POST", action, data)
            elif 'id="start"' in page:
                response, page = request(client, "instructions POST", "POST", f"{base}instructions/")
            else:
                raise RuntimeError(f"an unexpected page: {page[:200]!r}")
        costs.walks += 1
    return costs
