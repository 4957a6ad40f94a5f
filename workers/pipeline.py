"""Placeholder until the engine lands."""
def precompute_run(*, job_id, on_progress=None):
    raise RuntimeError("engine not ready")
