"""Builders shared across test folders (import them; nothing here is collected as a test).

* ``studies``: datasets on disk, registered models, studies built row by row, answering participants.
* ``answered_study``: a study with responses written row by row (exports, analysis, API, dashboard).
* ``demo_study``: the demo study built through the researcher's services (integration).
* ``model_reports``: the toy model and dataset of the model-report tests, with their fixtures.
* ``toy_adapters``, ``report_adapters``: analytic adapters, also registered by dotted path
  (``tests.builders.toy_adapters:PairwiseAdapter``) and imported so by worker subprocesses.
* ``hf_models``: tiny Hugging Face model folders built in code.
"""
