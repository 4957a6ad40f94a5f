"""The model report: how a multimodal model uses its modalities, measured without a crowd.

Modules (none imports Django; ``options``, ``slices``, ``stats``, ``tables`` and ``plots`` import
no torch either, so the web process can check a request and draw a stored report):

* :mod:`.options` -- :class:`~.options.ReportOptions`, checked before any work;
* :mod:`.slices` -- researcher-defined slices over item fields (``shape == triangle and
  colour != red``);
* :mod:`.probes` -- the forward passes: every modality configuration, permutations, noise,
  corruptions, checkpoint losses (torch);
* :mod:`.stats` -- bootstrap intervals, robustness areas, OGR and Gradient-Blending weights;
* :mod:`.quantify` -- the report itself, stage by stage (torch);
* :mod:`.tables` and :mod:`.plots` -- CSV tables and SVG figures of a finished report.

The definitions are in ``docs/MODEL_REPORT.md``.
"""
