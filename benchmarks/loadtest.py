"""Simulated participants for load tests: many walk a live study at once, over real HTTP.

Each simulated participant does what a browser does on the participant pages: opens the
study link (as a Prolific participant with a fresh ID), consents, reads the instructions,
then for every item loads the page and every URL it names in a ``src`` (up to 6 at a time: a
sound; pictures come inside the page as data URIs, issue 22), thinks, and
answers (an attention check as instructed, otherwise a seeded random candidate and
confidence); it acknowledges learning items, fills the survey and stops at the done page.
It retries what the server asks to be retried (503 with Retry-After, a cut connection),
as a participant pressing "Continue" would. An answer counts as *acknowledged* when the
server redirected after it: that is the promise the stored response must keep.

Only the loopback interface may be loaded (``127.0.0.1``, ``localhost``, ``::1``), every
loop is bounded in count and time, and the client is one asyncio thread speaking minimal
HTTP/1.1 (a connection per request, as gunicorn's sync workers close them anyway), so it
takes little CPU from the server it shares the machine with.

No Django here: ``manage.py loadtest`` and the server tests drive it.
"""

from __future__ import annotations

import asyncio
import html
import math
import os
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_PAGES_PER_WALK = 200  # far more than any study's pages: a guard against a redirect loop
MEDIA_IN_PARALLEL = 6  # what browsers open per host
MAX_RETRY_WAIT_S = 5.0

ROUTES = (
    "entry GET",
    "consent POST",
    "instructions GET",
    "instructions POST",
    "item GET",
    "media GET",
    "learn POST",
    "answer POST",
    "survey GET",
    "survey POST",
    "done GET",
)

_FORM = re.compile(r'<form method="post" action="([^"]+)" id="(answer-form|learn-form)"')
_GUESS = re.compile(r'name="guess" value="([^"]*)"')
_INSTRUCTED = re.compile(r"please choose <b>([^<]+)</b>")
_SRC = re.compile(r'src="(/(?!static/)[^"]+)"')  # static files are immutable: a browser caches them
_CODE = re.compile(r'data-code="([^"]+)"')
_ITEM_ACTION = re.compile(r"/item/([0-9a-f-]{36})/$")


def loopback_address(url: str) -> tuple[str, int]:
    """(host, port) of ``url``; refuses anything but plain HTTP to this machine."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{url!r}: only http://127.0.0.1, http://localhost or http://[::1] may be load-tested")
    return parts.hostname, parts.port or 80


# --------------------------------------------------------------------------- server CPU


def _proc_stats() -> dict[int, tuple[int, str, float]]:
    """Per live process: (parent PID, command line, CPU seconds of it and of the children it
    has reaped), from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read().decode("latin-1")
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("latin-1")
        except OSError:  # it ended while we looked
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # after the name: state, ppid, …, utime (12th), stime, cutime, cstime
        cpu = sum(int(v) for v in fields[11:15]) / tick
        out[int(entry)] = (int(fields[1]), cmdline, cpu)
    return out


def server_cpu_s(*, server_pids: Sequence[int] = (), database: str = "") -> dict[str, float]:
    """CPU seconds used so far by the server under test: ``gunicorn`` (each process of
    ``server_pids``, the masters of one or more instances, every live process below them, and
    the ones they reaped) and ``postgres`` (the live backends of ``database``; a backend that
    ended takes its CPU with it, so keep them alive: ``DB_CONN_MAX_AGE`` above the run and
    ``GUNICORN_MAX_REQUESTS=0``, or the count reads low, even below zero). The difference of two calls is
    the CPU of what ran between them."""
    stats = _proc_stats()
    found: dict[str, float] = {}
    if server_pids:
        below, frontier = set(server_pids), list(server_pids)
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, (ppid, _, _) in stats.items() if ppid == parent and pid not in below]
            below.update(children)
            frontier += children
        found["gunicorn"] = sum(stats[pid][2] for pid in below if pid in stats)
    if database:
        found["postgres"] = sum(
            cpu for _, cmdline, cpu in stats.values() if cmdline.startswith("postgres: ") and f" {database} " in cmdline
        )
    return found


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


async def http_request(
    host: str, port: int, method: str, target: str, *, headers: dict[str, str], body: bytes = b"", timeout_s: float
) -> Reply:
    """One request on a fresh connection; the body is read in full."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            lines = [
                f"{method} {target} HTTP/1.1",
                f"Host: {host}:{port}",
                "Connection: close",
                "User-Agent: mmeval-loadtest",
                *(f"{k}: {v}" for k, v in headers.items()),
            ]
            if method == "POST":
                lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionResetError("the server closed the connection without a reply")
            status = int(status_line.split(b" ", 2)[1])
            reply_headers: dict[str, str] = {}
            cookies: list[str] = []
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip()
                if name == "set-cookie":
                    cookies.append(value)
                reply_headers[name] = value
            if "content-length" in reply_headers:
                data = await reader.readexactly(int(reply_headers["content-length"]))
            elif reply_headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while (size := int((await reader.readline()).split(b";")[0], 16)) > 0:
                    chunks.append(await reader.readexactly(size))
                    await reader.readline()
                data = b"".join(chunks)
            else:
                data = await reader.read()
            return Reply(status, reply_headers, cookies, data)
        finally:
            writer.close()


# --------------------------------------------------------------------------- results


@dataclass
class RouteStats:
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # "503", "500", "timeout", "connection", …

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + sum(v for k, v in self.errors.items() if not k.isdigit())


@dataclass
class Acknowledged:
    """An answer the server acknowledged (redirected after)."""

    platform_id: str
    assignment: str
    guess: str
    confidence: int


@dataclass
class LoadReport:
    routes: dict[str, RouteStats] = field(default_factory=lambda: defaultdict(RouteStats))
    outcomes: Counter = field(default_factory=Counter)  # per walk: done, full, closed, timed-out, error, cut
    acknowledged: list[Acknowledged] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what went wrong in walks that ended in "error"
    elapsed_s: float = 0.0
    started_walks: int = 0
    done_walk_requests: int = 0  # requests made by the walks that ended "done"

    @property
    def total_requests(self) -> int:
        return sum(stats.requests for stats in self.routes.values())

    @property
    def requests_per_walk(self) -> float:
        """Requests (retries included) per walk that ended "done" (nan when none did)."""
        done = self.outcomes.get("done", 0)
        return self.done_walk_requests / done if done else math.nan

    def count_5xx(self) -> int:
        return sum(n for stats in self.routes.values() for code, n in stats.errors.items() if code.startswith("5"))

    def table(self) -> str:
        """Per route: requests, req/s, p50/p95/p99/max latency (ms), errors by status."""
        head = f"{'route':<18} {'requests':>8} {'req/s':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}  errors"
        lines = [head, "-" * len(head)]
        elapsed = max(self.elapsed_s, 1e-9)
        for route in [r for r in ROUTES if r in self.routes] + sorted(set(self.routes) - set(ROUTES)):
            stats = self.routes[route]
            ordered = sorted(stats.latencies_ms)
            cells = [percentile(ordered, q) for q in (50, 95, 99)] + [ordered[-1] if ordered else math.nan]
            errors = ", ".join(f"{code}×{n}" for code, n in sorted(stats.errors.items())) or "-"
            lines.append(
                f"{route:<18} {stats.requests:>8} {stats.requests / elapsed:>7.1f} "
                + " ".join(f"{c:>7.1f}" for c in cells)
                + f"  {errors}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'all':<18} {self.total_requests:>8} {self.total_requests / elapsed:>7.1f}"
            f"   over {self.elapsed_s:.1f} s; walks started {self.started_walks}, ended: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        )
        lines.append(
            f"completed walks {self.outcomes.get('done', 0)} ({self.outcomes.get('done', 0) / elapsed:.2f}/s), "
            f"{self.requests_per_walk:.1f} requests per completed walk"
        )
        return "\n".join(lines)

    def summary(self) -> dict:
        """The numbers of ``table`` as a dict (for JSON)."""
        routes = {}
        for route, stats in self.routes.items():
            ordered = sorted(stats.latencies_ms)
            routes[route] = {
                "requests": stats.requests,
                "rps": stats.requests / max(self.elapsed_s, 1e-9),
                **{f"p{q}_ms": percentile(ordered, q) for q in (50, 95, 99)},
                "errors": dict(stats.errors),
            }
        return {
            "elapsed_s": self.elapsed_s,
            "requests": self.total_requests,
            "rps": self.total_requests / max(self.elapsed_s, 1e-9),
            "routes": routes,
            "outcomes": dict(self.outcomes),
            "requests_per_walk": self.requests_per_walk,
            "acknowledged": len(self.acknowledged),
        }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# --------------------------------------------------------------------------- participant


class WalkEnded(Exception):
    def __init__(self, outcome: str, detail: str = ""):
        self.outcome, self.detail = outcome, detail
        super().__init__(f"{outcome}: {detail}" if detail else outcome)


class SimulatedParticipant:
    """One browser going through the study once per ``walk``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        study: str,
        report: LoadReport,
        rng: random.Random,
        think_s: float,
        timeout_s: float,
        retries: int,
    ):
        self.host, self.port, self.study, self.report, self.rng = host, port, study, report, rng
        self.think_s, self.timeout_s, self.retries = think_s, timeout_s, retries
        self.cookies: dict[str, str] = {}
        self.platform_id = ""
        self.requests = 0  # in the current walk, retries included

    async def walk(self) -> str:
        """One participant from the study link to the end; returns how it ended."""
        self.cookies = {}
        self.requests = 0
        self.platform_id = f"load-{uuid.uuid4().hex[:12]}"
        base = f"/s/{self.study}/"
        query = urlencode(
            {"PROLIFIC_PID": self.platform_id, "STUDY_ID": "loadtest", "SESSION_ID": uuid.uuid4().hex[:12]}
        )
        reply = await self._request("entry GET", "GET", f"{base}?{query}")
        if reply.status != 200 or 'action="' + base + 'consent/"' not in reply.text:
            return self._ended_on(reply)
        await self._think()
        reply = await self._request("consent POST", "POST", f"{base}consent/", {})
        for _ in range(MAX_PAGES_PER_WALK):
            if reply.status in (301, 302, 303):
                location = reply.headers.get("location", "")
                if not location.startswith("/"):
                    return "done"  # off to the platform (Prolific's completion URL): not followed
                reply = await self._request(_page_route(location, self.study), "GET", location)
                continue
            if reply.status != 200:
                return self._ended_on(reply)
            reply = await self._act_on_page(reply)
            if reply is None:
                return "done"
        raise WalkEnded("error", "too many pages")

    async def _act_on_page(self, reply: Reply) -> Reply | None:
        page, base = reply.text, f"/s/{self.study}/"
        if 'id="completion-code"' in page or 'id="mturk-form"' in page:
            return None
        if (code := _CODE.search(page)) is not None:
            raise WalkEnded(code.group(1))
        if 'id="survey-form"' in page:
            await self._think()
            data = {"comment": ""}
            if 'name="helpfulness"' in page:
                data["helpfulness"] = str(self.rng.randint(1, 5))
            return await self._request("survey POST", "POST", f"{base}survey/", data)
        if (form := _FORM.search(page)) is not None:
            await self._load_media(page)
            await self._think()
            action = html.unescape(form.group(1))
            if form.group(2) == "learn-form":
                return await self._request("learn POST", "POST", action, {})
            instructed = _INSTRUCTED.search(page)
            candidates = [html.unescape(c) for c in _GUESS.findall(page)]
            guess = html.unescape(instructed.group(1)) if instructed else self.rng.choice(candidates)
            confidence = self.rng.randint(1, 5)
            answered = await self._request(
                "answer POST", "POST", action, {"guess": guess, "confidence": str(confidence)}
            )
            if answered.status in (302, 303) and (assignment := _ITEM_ACTION.search(action)) is not None:
                self.report.acknowledged.append(Acknowledged(self.platform_id, assignment.group(1), guess, confidence))
            return answered
        if 'id="start"' in page:  # the instructions' "Start" button
            await self._think()
            return await self._request("instructions POST", "POST", f"{base}instructions/", {})
        raise WalkEnded("error", f"an unexpected page: {page[:200]!r}")

    async def _load_media(self, page: str) -> None:
        urls = [html.unescape(u) for u in _SRC.findall(page)]
        gate = asyncio.Semaphore(MEDIA_IN_PARALLEL)

        async def one(url: str) -> None:
            async with gate:
                got = await self._request("media GET", "GET", url)
                if got.status != 200:
                    raise WalkEnded("error", f"media {url} answered {got.status}")

        await asyncio.gather(*(one(url) for url in urls))

    async def _think(self) -> None:
        if self.think_s > 0:
            await asyncio.sleep(self.think_s * self.rng.uniform(0.5, 1.5))

    def _ended_on(self, reply: Reply) -> str:
        code = _CODE.search(reply.text)
        if reply.status == 200 and code is not None:
            return code.group(1)
        raise WalkEnded("error", f"status {reply.status}: {reply.text[:200]!r}")

    async def _request(self, route: str, method: str, target: str, data: dict | None = None) -> Reply:
        """The request, retried (bounded) after a 503 or a cut connection, as the retry page
        asks; every attempt is counted under ``route``."""
        stats = self.report.routes[route]
        for attempt in range(self.retries + 1):
            headers = {}
            if self.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            body = b""
            if method == "POST":
                body = urlencode({**(data or {}), "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}).encode()
            started = time.perf_counter()
            self.requests += 1
            try:
                reply = await http_request(
                    self.host, self.port, method, target, headers=headers, body=body, timeout_s=self.timeout_s
                )
            except TimeoutError:
                stats.errors["timeout"] += 1
                wait = 1.0
            except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError):
                stats.errors["connection"] += 1
                wait = 1.0
            else:
                stats.latencies_ms.append((time.perf_counter() - started) * 1000)
                self._keep_cookies(reply.cookies)
                if reply.status >= 400:
                    stats.errors[str(reply.status)] += 1
                if reply.status != 503:
                    return reply
                wait = min(float(reply.headers.get("retry-after", "1") or 1), MAX_RETRY_WAIT_S)
            if attempt < self.retries:
                await asyncio.sleep(wait)
        raise WalkEnded("error", f"{route} {target} failed {self.retries + 1} times")

    def _keep_cookies(self, set_cookies: list[str]) -> None:
        for header in set_cookies:
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in header.lower() or not value or value == '""':
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value


def _page_route(path: str, study: str) -> str:
    tail = path.split(f"/s/{study}/", 1)[-1].split("?", 1)[0]
    return {
        "": "entry GET",
        "instructions/": "instructions GET",
        "item/": "item GET",
        "survey/": "survey GET",
        "done/": "done GET",
    }.get(tail, "other GET")


# --------------------------------------------------------------------------- runner


async def run_load(
    *,
    url: str,
    study: str,
    participants: int,
    duration_s: float,
    think_s: float = 0.0,
    ramp_s: float = 0.0,
    walks_per_participant: int | None = None,
    seed: int = 0,
    timeout_s: float = 30.0,
    retries: int = 5,
    report: LoadReport | None = None,
) -> LoadReport:
    """``participants`` simulated participants, arriving evenly over ``ramp_s``, each walking
    the study again and again (at most ``walks_per_participant`` times) until ``duration_s``
    has passed; walks still running then are cut (outcome "cut"). Rates are over the time the
    run took. Pass ``report`` to watch it fill from another thread."""
    host, port = loopback_address(url)
    if participants < 1 or duration_s <= 0:
        raise ValueError("participants and duration must be positive")
    report = report or LoadReport()
    started = time.monotonic()
    deadline = started + duration_s

    async def one(k: int) -> None:
        await asyncio.sleep(ramp_s * k / participants)
        simulated = SimulatedParticipant(
            host=host,
            port=port,
            study=study,
            report=report,
            rng=random.Random(f"{seed}:{k}"),
            think_s=think_s,
            timeout_s=timeout_s,
            retries=retries,
        )
        walks = 0
        while time.monotonic() < deadline and (walks_per_participant is None or walks < walks_per_participant):
            walks += 1
            report.started_walks += 1
            try:
                outcome = await simulated.walk()
            except WalkEnded as ended:
                outcome = ended.outcome
                if ended.detail:
                    report.problems.append(f"{simulated.platform_id}: {ended.detail}")
            report.outcomes[outcome] += 1
            if outcome == "done":
                report.done_walk_requests += simulated.requests
            if outcome not in ("done", "timed-out", "expired"):
                return  # full, closed or broken: this browser stops

    tasks = [asyncio.create_task(one(k)) for k in range(participants)]
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        report.outcomes["cut"] += len(pending)
    report.elapsed_s = time.monotonic() - started
    return report


# --------------------------------------------------------------------------- the floor

# Routes that do no work of their own: what any request costs this server (``loadtest --floor``).
FLOOR_ROUTES = {
    "/healthz": "health check (answered by the first middleware)",
    "/robots.txt": "robots.txt (every middleware, no session, no query)",
}


async def request_floor(*, url: str, target: str, connections: int, duration_s: float, timeout_s: float = 30.0) -> int:
    """How many GETs of ``target`` ``connections`` clients, each asking again as soon as it
    has its answer, got answered (200) in ``duration_s``; anything else ends the run."""
    host, port = loopback_address(url)
    end = time.monotonic() + duration_s
    answered = 0

    async def client() -> None:
        nonlocal answered
        while time.monotonic() < end:
            reply = await http_request(host, port, "GET", target, headers={}, timeout_s=timeout_s)
            if reply.status != 200:
                raise RuntimeError(f"{target} answered {reply.status}")
            answered += 1

    await asyncio.gather(*(client() for _ in range(connections)))
    return answered


def floor_table(*, url: str, duration_s: float, server_pids: Sequence[int] = (), connections: int = 16) -> str:
    """Each of ``FLOOR_ROUTES`` asked back to back by ``connections`` clients for ``duration_s``:
    requests, req/s, and per request the server's CPU (with ``server_pids``) and this process's."""
    lines = [f"{'route':<55} {'requests':>8} {'req/s':>7} {'server CPU ms':>13} {'generator ms':>12}"]
    for target, what in FLOOR_ROUTES.items():
        before = server_cpu_s(server_pids=server_pids)
        generator_before = time.process_time()
        answered = asyncio.run(request_floor(url=url, target=target, connections=connections, duration_s=duration_s))
        requests = max(answered, 1)
        server_s = server_cpu_s(server_pids=server_pids).get("gunicorn", 0.0) - before.get("gunicorn", 0.0)
        server, generator = server_s / requests, (time.process_time() - generator_before) / requests
        cpu = f"{1000 * server:.2f}" if server_pids else "-"
        lines.append(f"{what:<55} {answered:>8} {answered / duration_s:>7.0f} {cpu:>13} {1000 * generator:>12.2f}")
    return "\n".join(lines)
