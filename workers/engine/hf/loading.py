"""Reading a model folder with ``transformers``, offline.

Importing this module sets ``HF_HUB_OFFLINE=1`` (unless the environment already says
otherwise) before ``transformers`` is imported, and every ``from_pretrained`` call passes
``local_files_only=True``: a model or tokenizer is read from its folder or not at all. Code
shipped inside a folder is never run (``trust_remote_code`` stays off).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from workers.engine.adapter import AdapterError
from workers.engine.hf.folder import HFOptions

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import transformers  # noqa: E402  (after the offline switch)

transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars in worker logs


def load_model(options: HFOptions, **kwargs: Any):
    """The folder's model, of the class its ``config.json`` names, in float32 (``kwargs`` go
    to ``from_pretrained``)."""
    cls = getattr(transformers, options.architecture)
    return cls.from_pretrained(
        str(options.path), local_files_only=True, trust_remote_code=False, dtype=torch.float32, **kwargs
    )


def load_tokenizer(options: HFOptions):
    """The folder's tokenizer; it must be a fast one (``tokenizer.json``), which knows the
    words its pieces came from."""
    if not any(
        (options.path / name).is_file()
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")
    ):
        raise AdapterError(
            f"{options.path} has no tokenizer (save it beside the model with tokenizer.save_pretrained(folder))"
        )
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        str(options.path), local_files_only=True, trust_remote_code=False
    )
    if not getattr(tokenizer, "is_fast", False):
        raise AdapterError(
            f"{options.path}: the tokenizer is not a fast (tokenizers) one; mmeval needs its word "
            "offsets to show whole words"
        )
    tokenizer.padding_side = "right"  # the adapters find a text's tokens from its start
    return tokenizer
