"""How wide the participant page shows each drawn view, and so how large the text drawn into
it is *as displayed*: ``font px × displayed width / natural width``.

The page (templates/participant/item.html, static/mmeval/mmeval.css) puts each candidate's
views in its answer card, at most four cards side by side on a laptop and two on a phone.
An image is drawn at ``min(natural width, card width, the view's max-width)`` CSS px (a
``.view-box`` is ``fit-content``, so a narrow PNG keeps its natural size). The constants
below are the stylesheet's numbers; tests/engine/test_display.py checks that the stylesheet
still says them and that every view kind's drawn text reaches :data:`MIN_TEXT_PX` at both
viewports. No Django.
"""

from __future__ import annotations

import math

__all__ = [
    "MIN_TEXT_PX",
    "VIEWPORTS",
    "VIEW_MAX_HEIGHT",
    "VIEW_MAX_WIDTH",
    "candidate_column_px",
    "displayed_text_px",
    "view_display_px",
]

#: Smallest text a participant view may show, in CSS px (issue 18: at 1× and on a phone).
MIN_TEXT_PX = 11.0
#: The viewport widths the views are checked at: a 1366×768 laptop and a 390 px phone.
VIEWPORTS = {"laptop": 1366, "phone": 390}

# static/mmeval/mmeval.css, in CSS px (1rem = 16 px)
WIDE_MAIN_MAX = 1240  # body.wide main { max-width: 1240px }
MAIN_PAD, MAIN_PAD_PHONE = 16.0, 9.6  # main padding 1rem; .6rem at max-width 600px
PHONE_MAX = 600  # the stylesheet's phone breakpoint (max-width: 600px)
TWO_COLUMN_MIN = 900  # .item-layout's two columns from min-width 900px
STIMULUS_COLUMN = 260  # .item-layout { grid-template-columns: 260px minmax(0, 1fr) }
LAYOUT_GAP = 20.0  # .item-layout gap 1.25rem
CANDIDATE_MIN = 200  # .has-evidence .candidates: repeat(auto-fit, minmax(200px, 1fr))
CANDIDATE_GAP, CANDIDATE_GAP_PHONE = 12.0, 8.0  # .candidates gap .75rem; .5rem on a phone
CARD_PAD_X, CARD_PAD_X_PHONE = 12.0, 8.0  # .candidate padding-inline .75rem; .5rem on a phone
CARD_BORDER = 1.0
#: Views with their own ``max-width`` (``.view-top_pairs``) or ``max-height``
#: (``.view-interaction``, drawn ``width: auto``), in CSS px.
VIEW_MAX_WIDTH = {"top_pairs": 280.0}
VIEW_MAX_HEIGHT = {"interaction": 440.0}


def candidate_column_px(*, viewport: int) -> float:
    """Content width of the narrowest answer card at ``viewport`` CSS px: the most cards a
    row holds (auto-fit, each at least :data:`CANDIDATE_MIN`; two on a phone)."""
    if viewport <= PHONE_MAX:
        main = viewport - 2 * MAIN_PAD_PHONE
        column = (main - CANDIDATE_GAP_PHONE) / 2
        return column - 2 * (CARD_PAD_X_PHONE + CARD_BORDER)
    main = min(WIDE_MAIN_MAX, viewport) - 2 * MAIN_PAD
    answers = main - STIMULUS_COLUMN - LAYOUT_GAP if viewport >= TWO_COLUMN_MIN else main
    n = max(1, math.floor((answers + CANDIDATE_GAP) / (CANDIDATE_MIN + CANDIDATE_GAP)))
    column = (answers - (n - 1) * CANDIDATE_GAP) / n
    return column - 2 * (CARD_PAD_X + CARD_BORDER)


def view_display_px(*, view: str, natural_width: int, natural_height: int, viewport: int) -> float:
    """The width in CSS px the page draws ``view``'s PNG of that natural size at."""
    width = min(float(natural_width), candidate_column_px(viewport=viewport), VIEW_MAX_WIDTH.get(view, math.inf))
    if view in VIEW_MAX_HEIGHT and natural_height > 0:
        width = min(width, VIEW_MAX_HEIGHT[view] * natural_width / natural_height)
    return width


def displayed_text_px(*, font_px: float, view: str, natural_width: int, natural_height: int, viewport: int) -> float:
    """``font_px`` as the page shows it: scaled by displayed width / natural width."""
    shown = view_display_px(view=view, natural_width=natural_width, natural_height=natural_height, viewport=viewport)
    return font_px * shown / natural_width
