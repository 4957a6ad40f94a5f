"""mmeval's tests, one folder per thing tested (builders and fixtures shared across folders
live in ``builders/``, ``conftest.py``, ``isolation.py`` and ``commandline.py``):

* ``engine/``: the model engine (``workers/engine``): adapters, attribution, reports, ``explain``.
* ``analysis/``: the statistics (``annotations/analysis``), pure pandas, no Django.
* ``services/``: the services (``annotations/services``) on real Postgres.
* ``selectors/``: the reads (``annotations/selectors``) a view or task relies on.
* ``exports/``: the CSV exports (``annotations/selectors/exports.py``, ``annotations/downloads.py``) and
  their round trip.
* ``views/``: the participant, researcher and dashboard pages.
* ``api/``: the researcher API.
* ``commands/``: management commands as a user runs them.
* ``serving/``: production settings, gunicorn, static files, health, limits on bad input.
* ``integration/``: a real Celery worker, live servers and Chromium.
* ``test_layers.py``: the layers of docs/DESIGN.md and no import circle, read off the source.
"""
