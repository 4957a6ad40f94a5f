"""The model report through per-modality encodings (``encode_modality`` + ``fuse``,
workers/engine/encodings.py): the same numbers as through ``head`` on every pairing, EMAP's
closed form on a bilinear model, and fewer passes. No Django."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.report import (
    CountingAdapter,
    CountingEncodingsAdapter,
    format_table,
    report_differences,
    run_report,
)
from tests.builders.toy_adapters import BilinearAdapter, EncodedBilinearAdapter, EncodedNonFiniteAdapter
from tests.engine.tolerances import FLOAT32_REPORT_TOLERANCE
from workers.engine.attribution import NonFiniteError
from workers.engine.demo import data
from workers.engine.demo import model as demo_model
from workers.engine.demo.adapter import DemoAdapter
from workers.engine.encodings import encode_items
from workers.engine.interactions import emap
from workers.engine.report.quantify import ReportOptions, model_report_run

# The PID's bootstrap solves one convex program per resample (200 by default, most of these
# reports' time); 20 still run every step of it. The PID tests choose their own.
FAST = dict(n_resamples=200, noise_levels=[0.0, 0.5, 1.0], noise_samples=2, permutations=2, pid_resamples=20)


def _loaded(adapter):
    adapter.load(torch.device("cpu"))
    return adapter


def _closed_form_emap(adapter: BilinearAdapter, items: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Pair logits ``L[i, j, c] = (w_c . a_i)(v_c . b_j)`` and the projection
    ``(w a_i)(v b_mean) + (w a_mean)(v b_i) - (w a_mean)(v b_mean)`` (+ ``u c_i`` with a third
    modality, which stays with item ``i`` in every pair)."""
    a = np.array([it["a"] for it in items]) @ adapter.w.numpy().T  # (N, C)
    b = np.array([it["b"] for it in items]) @ adapter.v.numpy().T
    pair = a[:, None, :] * b[None, :, :]
    projection = a * b.mean(0) + a.mean(0) * b - a.mean(0) * b.mean(0)
    if adapter.third:
        c = np.array([it["c"] for it in items]) @ adapter.u.numpy().T
        pair = pair + c[:, None, :]
        projection = projection + c
    return pair, projection


@pytest.mark.parametrize("third", [False, True])
def test_emap_by_encodings_is_the_closed_form_of_a_bilinear_model(third):
    adapter = _loaded(EncodedBilinearAdapter(third=third))
    items = adapter.make_items(13, seed=3)
    result = emap(adapter, items, modalities=("a", "b"), batch_size=4, max_rows=7, keep_pair_logits=True)
    pair, projection = _closed_form_emap(adapter, items)
    np.testing.assert_allclose(result.pair_logits, pair, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.projection, projection, rtol=0, atol=1e-12)
    # Each item's modalities were encoded once; only the fusion ran on the 13 x 13 pairs.
    assert adapter.head_rows == 0
    assert adapter.encoded_rows == len(adapter.modalities) * 13
    assert adapter.fused_rows == 13 * 13
    # The head on every pair gives the same numbers, whichever pairing.
    for pairing in ("items", "embedded"):
        through_head = emap(
            adapter, items, modalities=("a", "b"), pairing=pairing, encodings=False, keep_pair_logits=True
        )
        np.testing.assert_allclose(through_head.pair_logits, result.pair_logits, rtol=0, atol=1e-12)
        assert through_head.emap_gap == result.emap_gap


@pytest.mark.parametrize("third", [False, True])
def test_whole_report_is_the_same_through_encodings_and_through_the_head(third):
    options = ReportOptions(**FAST, batch_size=5, max_rows=12, pair=["a", "b"] if third else None)
    items = EncodedBilinearAdapter(third=third).make_items(17, seed=5)
    by_head = model_report_run(_loaded(BilinearAdapter(third=third)), items, options=options)
    encoded = _loaded(EncodedBilinearAdapter(third=third))
    by_encodings = model_report_run(encoded, items, options=options)
    largest, other = report_differences(by_head, by_encodings)
    assert largest <= 1e-12 and other == []
    assert by_encodings["interactions"]["emap"]["n"] == 17
    # Only the gradient method of the group pairs still runs the head (one row per item and call).
    assert encoded.head_rows < by_head["summary"]["n_items"] * 4


def test_nan_encodings_stop_the_report_naming_the_item():
    adapter = _loaded(EncodedNonFiniteAdapter())
    items = adapter.make_items(5)
    items[3]["poison"] = True
    with pytest.raises(NonFiniteError) as raised:
        model_report_run(adapter, items, options=ReportOptions(**FAST, batch_size=2), item_lines={"it3": 9})
    assert str(raised.value).startswith("item(s) 'it3' (line 9): adapter.fuse returned NaN/Inf logits")


def test_nan_in_emap_pairs_names_the_item_giving_the_first_modality():
    adapter = _loaded(EncodedNonFiniteAdapter())
    items = adapter.make_items(4)
    items[2]["poison"] = True
    with pytest.raises(NonFiniteError) as raised:
        emap(adapter, items, batch_size=3, max_rows=5)
    assert str(raised.value).startswith("item(s) 'it2': adapter.fuse returned NaN/Inf logits during emap")


# --------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(demo_cache_dir: Path) -> DemoAdapter:
    demo_model.load_or_train(demo_cache_dir, progress=False)
    adapter = DemoAdapter(cache_dir=demo_cache_dir)
    adapter.load(torch.device("cpu"))
    return adapter


@pytest.fixture(scope="module")
def demo_items(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("report-encodings")
    data.generate_dataset(out, n_items=36, seed=0)
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    return [{**item, "image": str(out / item["image"])} for item in items]


def test_demo_fusion_of_its_encodings_is_its_head(demo, demo_items):
    from workers.engine.attribution import prepare_batch

    p = prepare_batch(demo, demo.encode(demo_items[:16]))
    with torch.no_grad():
        head = demo.head(*p.inputs, batch=p.batch)
        fused = demo.fuse(*(demo.encode_modality(m, x, batch=p.batch) for m, x in zip(demo.modalities, p.inputs)))
    assert torch.equal(head, fused)
    # Pairing encodings of different items is pairing the items: each question brings its own
    # attention mask (a wrong mask moves logits by whole units; float32 rounding by 1e-5).
    encoded = encode_items(demo, demo_items[:8], batch_size=3)
    order = [5, 0, 7, 2, 6, 1, 4, 3]
    swapped = [{**demo_items[i], "text": demo_items[j]["text"]} for i, j in enumerate(order)]
    q = prepare_batch(demo, demo.encode(swapped))
    with torch.no_grad():
        expected = demo.head(*q.inputs, batch=q.batch)
        paired = demo.fuse(encoded[0], encoded[1][order])
    torch.testing.assert_close(paired, expected, rtol=0, atol=1e-4)


def test_demo_emap_through_encodings_equals_the_head_on_every_pair(demo, demo_items):
    items = demo_items[:24]
    fast = emap(demo, items, pairing="embedded", context_modality="text", keep_pair_logits=True)
    slow = emap(demo, items, pairing="embedded", context_modality="text", keep_pair_logits=True, encodings=False)
    np.testing.assert_allclose(fast.pair_logits, slow.pair_logits, rtol=0, atol=1e-12)
    assert fast.emap_gap == slow.emap_gap and fast.agreement == slow.agreement


def test_demo_report_with_checkpoints_is_the_same_and_passes_move_to_the_fusion(demo, demo_items):
    options = ReportOptions(**FAST, checkpoints=["step-25", "step-900"], group_pairs="", batch_size=16)
    runs = [run_report(demo, demo_items, encodings=e, options=options, times=_no_times()) for e in (False, True)]
    before, after = runs
    # Float32 rounding apart (the two paths run different kernels; 2.9e-6 on an AVX-512 machine,
    # 0 on others); counts are integers, so this also says every histogram count is equal.
    largest, other = report_differences(before.report, after.report)
    assert largest <= FLOAT32_REPORT_TOLERANCE and other == []
    n = len(demo_items)
    assert before.stages["emap"].passes.head == n * n and before.stages["emap"].passes.fuse == 0
    assert after.stages["emap"].passes.head == 0 and after.stages["emap"].passes.fuse == n * n
    assert after.stages["emap"].passes.encode == 2 * n  # each item's picture and question once
    for stage in ("subsets", "permutation", "noise", "corruption", "learning"):
        assert after.stages[stage].passes.head == 0, stage
    table = format_table(runs)
    assert "| emap | before |" in table and "| emap | after |" in table


def test_counting_wrappers_hide_or_show_the_hook(demo):
    from workers.engine.encodings import has_modality_encodings

    assert has_modality_encodings(demo)
    assert not has_modality_encodings(CountingAdapter(demo))
    assert has_modality_encodings(CountingEncodingsAdapter(demo))


def test_a_subclass_that_overrides_the_head_is_not_paired_by_inherited_encodings():
    from workers.engine.encodings import has_modality_encodings

    class Shifted(EncodedBilinearAdapter):
        def head(self, *embedded, batch):
            return super().head(*embedded, batch=batch) + 1.0

    class ShiftedWithEncodings(Shifted):
        def fuse(self, *encodings):
            return super().fuse(*encodings) + 1.0

    assert has_modality_encodings(EncodedBilinearAdapter())
    assert not has_modality_encodings(Shifted())
    assert not has_modality_encodings(ShiftedWithEncodings())  # encode_modality is still above head
    adapter = _loaded(Shifted())
    items = adapter.make_items(6, seed=2)
    result = emap(adapter, items, keep_pair_logits=True)
    pair, _ = _closed_form_emap(adapter, items)
    np.testing.assert_allclose(result.pair_logits, pair + 1.0, rtol=0, atol=1e-12)  # its own head
    assert adapter.fused_rows == 0


def _no_times() -> dict[str, float]:
    return {"head": 0.0, "encode": 0.0, "fuse": 0.0}


def test_demo_reads_a_rewritten_picture_again(demo, tmp_path):
    """Decoded pictures are cached by path, modification time and size: a new file is read anew."""
    import os

    from PIL import Image

    path = tmp_path / "picture.png"
    item = {"id": "p1", "image": str(path), "text": "what colour is the square?"}
    Image.new("RGB", (64, 64), (200, 10, 10)).save(path)
    first = demo.encode([item]).pixels.clone()
    assert torch.equal(demo.encode([item]).pixels, first)  # from the cache, the same
    Image.new("RGB", (64, 64), (10, 10, 200)).save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a distinct time on any filesystem
    second = demo.encode([item]).pixels
    assert not torch.equal(second, first)
    assert second[0, 2].mean() > second[0, 0].mean()  # now blue


def test_rounding_never_moves_a_histogram_count():
    """Quantities that are zero in theory come out as +-1e-16, with a sign that depends on the
    CPU's kernels: their histogram is one bin, and a value within rounding of an edge counts
    as on the edge, whichever side the rounding put it."""
    from workers.engine.report.quantify import _distribution

    noise = [1.1e-16, -2.2e-16, 0.0, 3.3e-17]
    flat = _distribution(noise)
    assert flat["histogram"]["counts"] == [4] and len(flat["histogram"]["edges"]) == 2
    assert _distribution([-x for x in noise])["histogram"]["counts"] == [4]

    shares = [0.5, -0.25, 1.0, -1.0]
    up = _distribution([*shares, 1e-16, 1.0 + 2e-16], low=-1.0, high=1.0)
    down = _distribution([*shares, -1e-16, 1.0 - 2e-16], low=-1.0, high=1.0)
    assert up["histogram"] == down["histogram"]
    counts = up["histogram"]["counts"]
    assert sum(counts) == 6 and counts[10] == 1 and counts[-1] == 2  # 0 in the bin from 0; 1 kept
    # A real spread is binned as numpy bins it.
    spread = _distribution([0.1, 0.2, 0.35, 0.9])
    assert spread["histogram"]["counts"] == np.histogram([0.1, 0.2, 0.35, 0.9], bins=20)[0].tolist()


def test_a_distribution_at_one_value_is_drawn_as_a_line():
    """A dividend that is zero on every item (rounding apart) has one bin 2e-9 wide, invisible
    as a bar next to a real spread: the plot draws it as a vertical line."""
    from workers.engine.report.plots import distributions_svg
    from workers.engine.report.quantify import _distribution

    report = {
        "reliance": {
            "share": {"a": _distribution([0.2, 0.5, 0.9], low=-1.0, high=1.0)},
            "dividend": {"a+b": _distribution([0.4, 1.5, 2.0]), "a+c": _distribution([1e-16, -1e-16, 0.0])},
        }
    }
    svg = distributions_svg(report)
    assert "a+c (median 0.00)" in svg and "a+b (median 1.50)" in svg
    assert svg.count('id="LineCollection_') == 1  # the one line; the spreads are stairs
