"""How token strings are laid out again as text. No Django, no heavy imports: the web pages
use it as well as the renderer."""

from __future__ import annotations

from collections.abc import Sequence

# Written against the word before them ("circle?", "yes,") or after them ("(left").
_CLOSING = frozenset(".,;:!?%)]}…»”’")
_OPENING = frozenset("([{«“‘¿¡")


def spaces_before(tokens: Sequence[str]) -> list[bool]:
    """For each token, whether a space goes before it when the tokens are shown as a line of
    text: none before the first, before a token of closing punctuation only ("?", "),"), or
    after a token of opening punctuation only ("(")."""
    out = []
    for k, token in enumerate(tokens):
        text = str(token)
        previous = str(tokens[k - 1]) if k else ""
        closing = bool(text) and all(c in _CLOSING for c in text)
        after_opening = bool(previous) and all(c in _OPENING for c in previous)
        out.append(k > 0 and not closing and not after_opening)
    return out
