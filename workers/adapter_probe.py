"""The child process of a registration: build an adapter, load it and check it on items.

Registration (``annotations.services.registry``) runs this as ``python -m
workers.adapter_probe REQUEST RESULT`` under a time limit, so a factory that hangs or trains a
model for minutes is killed without holding a web request or the server's memory. REQUEST is a
JSON file: ``adapter_path``, ``options``, ``device``, ``items`` (raw items) and ``sys_path``
(the parent's import path). The answer is written to the JSON file RESULT, not to stdout, which
the adapter may print to: ``{"labels", "modalities", "capabilities"}``, or ``{"step": "load" | "check",
"message", "traceback"}``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any


def adapter_probe(*, request: dict[str, Any]) -> dict[str, Any]:
    """Load the adapter of ``request`` and check it on its items; a dict for the result file."""
    from workers.engine.adapter import AdapterError, error_text
    from workers.engine.registry import check_adapter, load_adapter

    try:
        adapter = load_adapter(request["adapter_path"], device=request["device"], options=request["options"])
    except AdapterError as exc:  # names the step (import, create, load) and the adapter's own message
        trace = "".join(traceback.format_exception(exc)) if exc.__cause__ else ""
        return {"step": "load", "message": str(exc), "traceback": trace}
    try:
        check = check_adapter(adapter, request["items"])
    except Exception as exc:
        return {"step": "check", "message": error_text(exc), "traceback": traceback.format_exc()}
    from workers.engine.attention import has_attention
    from workers.engine.features import has_features

    capabilities = {"features": has_features(adapter), "attention": has_attention(adapter)}
    return {"labels": check.labels, "modalities": check.modalities, "capabilities": capabilities}


def main(*, argv: list[str]) -> int:
    request_path, result_path = Path(argv[0]), Path(argv[1])
    request = json.loads(request_path.read_text(encoding="utf-8"))
    sys.path[:] = [*request["sys_path"], *(p for p in sys.path if p not in request["sys_path"])]
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        # An adapter module may import the project's models (a test module does); nothing here
        # opens a database connection.
        import django

        django.setup()
    result = adapter_probe(request=request)
    result_path.write_text(json.dumps(result, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(argv=sys.argv[1:]))
