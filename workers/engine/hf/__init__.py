"""Hugging Face adapters: a model folder written by ``save_pretrained`` becomes an mmeval
adapter, with nothing to write but its path and kind.

Kinds (:data:`~workers.engine.hf.folder.KINDS`):

* ``vqa``: vision-language question answering, ViLT (``ViltForQuestionAnswering``);
* ``zero-shot``: CLIP-style zero-shot classification with label prompts (``CLIPModel``);
* ``classify``: image-text classification with a classification head, ViLT
  (``ViltForImagesAndTextClassification`` with one image per item).

Register one with ``manage.py register_model NAME --hf PATH [--kind KIND] [--labels ...]``,
or by the dotted path :data:`HF_ADAPTER` with the options :func:`from_folder` takes. Models
are only ever read from local folders (see :mod:`workers.engine.hf.loading`). No Django here;
``transformers`` is imported only when an adapter loads.
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.engine.adapter import adapter_factory
from workers.engine.hf.folder import KINDS, HFOptions, hf_options

__all__ = ["HF_ADAPTER", "KINDS", "HFOptions", "from_folder", "hf_options"]

HF_ADAPTER = "workers.engine.hf:from_folder"


@adapter_factory
def from_folder(
    *,
    path: str,
    kind: str | None = None,
    labels: Sequence[str] | None = None,
    prompt: str | None = None,
    image_size: int | None = None,
):
    """An adapter (not loaded yet) for the model folder ``path``; the options are
    :func:`~workers.engine.hf.folder.hf_options`'s. Raises
    :class:`~workers.engine.adapter.AdapterError` with one line when the folder or an option
    does not fit."""
    options = hf_options(path=path, kind=kind, labels=labels, prompt=prompt, image_size=image_size)
    if options.kind == "zero-shot":
        from workers.engine.hf.clip import ClipZeroShotAdapter

        return ClipZeroShotAdapter(options)
    from workers.engine.hf.vilt import ViltAdapter

    return ViltAdapter(options)
