"""Training views: the manifest's `views`, their feature tables, random view sampling, tridigits renderings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.unit.training.test_dataset import media, problems, write  # noqa: F401 (fixture)
from training.data.dataset import Example, load_dataset
from training.data.demo import DemoConfig, _image_job
from training.data.demo_media import ImageJob, render_digit
from training.data.demo_views import CLEAN_IMAGE, image_views
from training.data.splits import Split, view_examples, view_table


def test_manifest_views_load_and_bad_views_are_reported(media: Path) -> None:  # noqa: F811
    good = {"id": "a", "split": "train", "label": "x", "image": "ok.png", "views": {"image": ["ok.png", "ok.png"]}}
    (example,) = load_dataset(write(media, good))
    assert example.views == {"image": (media / "ok.png", media / "ok.png")}
    bad = [
        {"id": "b", "split": "train", "label": "x", "text": "hi", "views": {"image": ["ok.png"]}},
        {"id": "c", "split": "train", "label": "x", "image": "ok.png", "views": {"image": ["nope.png"]}},
        {"id": "d", "split": "train", "label": "x", "image": "ok.png", "views": ["ok.png"]},
    ]
    found = problems(write(media, *bad))
    assert any("line 1" in p and "views.image" in p for p in found)
    assert any("line 2" in p and "nope.png" in p for p in found)
    assert any("line 3" in p and "views must be a JSON object" in p for p in found)


def test_view_table_puts_the_item_first_and_repeats_it_for_missing_views() -> None:
    items = [Example("a", "train", "0", image=Path("a.png"), views={"image": (Path("a1"), Path("a2"))}),
             Example("b", "train", "1", image=Path("b.png")),
             Example("c", "train", "1", image=Path("c.png"), views={"image": (Path("c1"),)})]  # fmt: skip
    assert [e.id for e in view_examples(items, "image")] == ["a#0", "a#1", "c#0"]
    own = torch.tensor([[0.0], [10.0], [20.0]])
    table = view_table(items, "image", own, np.array([[1.0], [2.0], [21.0]], np.float32))
    assert table.shape == (3, 3, 1)
    assert table[:, :, 0].tolist() == [[0, 1, 2], [10, 10, 10], [20, 21, 20]]


def test_take_samples_views_only_with_a_generator() -> None:
    own = torch.zeros(4, 2)
    split = Split({"image": own}, torch.ones(4, 1), torch.zeros(4, dtype=torch.long), list("abcd"))
    split.views = {"image": torch.arange(4 * 3 * 2, dtype=torch.float32).view(4, 3, 2)}
    rows = torch.arange(4)
    assert torch.equal(split.take(rows)[0]["image"], own)  # evaluation: the item's own rendering
    seen = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        picked = split.take(rows, g)[0]["image"]  # [4,2]: one of row r's three slots
        for r in range(4):
            slot = int(picked[r, 0] - 6 * r) // 2
            assert torch.equal(picked[r], split.views["image"][r, slot])
            seen.add(slot)
    assert seen == {0, 1, 2}


def test_image_views_cover_clean_mild_and_corrupted_in_both_polarities() -> None:
    cfg, rng = DemoConfig(), np.random.default_rng(0)
    digit = np.zeros((8, 8))
    digit[1:7, 3:5] = 16.0  # a "1"
    views = image_views(_image_job(cfg, digit, rng), 30, rng, lambda r: _image_job(cfg, None, r))
    assert all(v.pixels is digit for v in views)
    clean = [v for v in views[::3]]
    assert all(v.noise == 0 and v.blur == 0 and not v.patches for v in clean)
    assert all(v.noise > 0 for v in views[2::3])
    assert {v.light_ink for v in views} == {False, True} and {v.resample for v in views} >= {"nearest", "bicubic"}
    dark = np.asarray(render_digit(ImageJob(pixels=digit, size=32, **CLEAN_IMAGE), rng), np.float32)
    light = np.asarray(render_digit(ImageJob(pixels=digit, size=32, light_ink=True, **CLEAN_IMAGE), rng), np.float32)
    assert np.allclose(dark + light, 255.0, atol=1.0)  # the same digit, inverted
    assert dark[16, 16] < 50 and dark[2, 2] > 200  # dark ink on light paper
