"""mmeval's benchmarks: timings and load tests of the product, kept out of its packages.

=========================  =============================================================  =======
Module                     Measures                                                       Django?
=========================  =============================================================  =======
``benchmarks.explain``     the explanation engine's throughput against its floor          no
                           (with ``.floors``: pass times and counts; ``.baselines``:
                           one item at a time)
``benchmarks.analysis``    the statistics (``annotations.analysis``), synthetic study     no
``benchmarks.metrics``     the automatic explanation metrics, per item                    no
``benchmarks.loadtest``    the participant pages of a running server, over HTTP           no
``benchmarks.export``      the streamed CSV export on a large synthetic study (Postgres)  yes
``benchmarks.precompute``  one study's precompute by 1, 2, … Celery worker processes      yes
=========================  =============================================================  =======

They use only the public API of the engine (``workers.engine``), the analysis and the
services. The management commands ``bench_explain``, ``bench_export``, ``bench_precompute`` and
``loadtest`` are thin wrappers over these modules. Nothing is imported here, so importing one
benchmark loads only what it needs (``bench_export`` never loads torch).
"""
