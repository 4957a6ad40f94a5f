"""Reads: every query a page, task or command needs. Selectors never write and never import a
service (docs/DESIGN.md, "Layers").

One module per area: ``studies`` (what researchers own, a study's items, candidates,
explanations and progress), ``participants`` (the participant path and item pages),
``precompute`` (what a study still needs computed), ``analysis`` (the frames the statistics
read), ``exports`` (the CSV rows) and ``model_reports``.

Names read ``<entity>_<what>``: the thing a selector is scoped to (its first keyword argument:
``user``, ``study``, ``participant``, ``assignment``, ``job``, ``model``, ``prediction``,
``item``), then what it returns, as a noun: ``user_studies(user=…)``,
``study_progress(study=…)``, ``job_progress(job=…)``, ``model_predicted_labels(model=…, …)``.
Pure helpers that query nothing (``csv_lines``, ``mturk_submit_url``) are named for what they
compute.
"""
