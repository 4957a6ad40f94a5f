"""mmeval's benchmarks: timing and load tests that measure the product, kept out of it.

==========================  ========================================================  =========
Module                      Measures                                                  Django?
==========================  ========================================================  =========
``benchmarks.explain``      the explanation engine's throughput against its floor     no
``benchmarks.analysis``     the statistics (``annotations.analysis``) on a synthetic  no
                            study
``benchmarks.loadtest``     the participant pages of a running server, over HTTP      no
==========================  ========================================================  =========

They use only the engine's and the analysis' public API. The management commands
(``bench_explain``, ``bench_export``, ``bench_precompute``, ``loadtest``) are thin wrappers over
these modules. Nothing is imported here, so importing one benchmark loads only what it needs.
"""
