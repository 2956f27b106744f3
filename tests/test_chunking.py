"""Many prompts: a call's prompts go through the engine in bounded chunks, and the result equals one pass."""

import pytest
import torch

import decomviz as dv
from tests.conftest import make_image

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


def _cam(model, **kw):
    return dv.DecomCAM(model, n_components=2, top_channels=16, **kw)


def test_prompts_go_through_the_engine_in_bounded_chunks(tiny_rn, monkeypatch):
    from decomviz.methods import chunking
    prompts = [f"prompt {i}" for i in range(1000)]
    cam = dv.GradCAM(tiny_rn)
    seen = []
    original = type(cam)._explain
    monkeypatch.setattr(type(cam), "_explain", lambda self, x, text, p: seen.append(len(p)) or original(self, x, text, p))
    exp = cam(make_image(0), prompts)
    assert exp.saliency.shape == (1, 1000, 128, 128) and exp.prompts == prompts
    assert max(seen) <= chunking.PROMPTS_PER_PASS and sum(seen) == 1000


@pytest.mark.parametrize("kw", [dict(), dict(score="logit", sign="both"), dict(score="softmax")])
def test_chunked_calls_equal_one_pass(tiny_rn, monkeypatch, kw):
    from decomviz.methods import base, chunking
    prompts = [f"a photo of thing {i}" for i in range(21)]
    cam = _cam(tiny_rn, **kw)
    images = [make_image(0), make_image(1)]
    monkeypatch.setattr(chunking, "PROMPTS_PER_PASS", 8)
    monkeypatch.setattr(base, "PROMPTS_PER_PASS", 8)
    chunked = cam(images, prompts)
    monkeypatch.setattr(base, "PROMPTS_PER_PASS", 1000)
    whole = cam(images, prompts)
    assert chunked.prompts == whole.prompts and set(chunked.flags) == set(whole.flags)
    scores = float(whole.masked_scores.abs().max())  # float rounding is relative to the scores' size
    fields = {"base_score": scores, "reference_score": scores, "alpha": None, "singular_values": None}
    if kw.get("sign") != "both":  # (with "both", a near tie between orientations may be decided either way)
        fields.update(contributions=scores, masked_scores=scores)
    for name, scale in fields.items():
        a, b = getattr(chunked, name), getattr(whole, name)
        assert float((a - b).abs().max()) <= 1e-4 * (scale or float(b.abs().max())), name
    assert torch.equal(chunked.images, whole.images) and chunked.saliency.shape == whole.saliency.shape
