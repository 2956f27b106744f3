"""The authors' choices, each on a tiny case, and class-discriminative scoring with a contrast set."""
import pytest
import torch

import decomviz as dv
from decomviz.methods.decomcam import decompose
from decomviz.ops import blend, max_blend
from tests.conftest import make_image

PROMPTS = ["a red circle", "a blue square"]


def test_svd_flip_makes_the_largest_entry_of_each_spatial_vector_positive():
    g = torch.Generator().manual_seed(0)
    A, G = torch.randn(2, 12, 4, 4, generator=g), torch.randn(2, 3, 12, 4, 4, generator=g)
    dec = decompose(A, G, top_channels=8, n_components=4, center=True, orient="svd_flip")
    peak = dec.u.gather(-1, dec.u.abs().argmax(-1, keepdim=True))[..., 0]
    assert (peak > 0).all()
    ref = decompose(A, G, top_channels=8, n_components=4, center=True)
    assert torch.allclose(dec.u.abs(), ref.u.abs(), atol=1e-5)          # only the signs differ
    assert torch.allclose(dec.singular_values, ref.singular_values)


def test_max_blend_is_the_elementwise_max_and_not_convex():
    x = torch.tensor([[-1.0, 0.5, 2.0]])
    r = torch.tensor([[0.5, -0.5, 1.0]])
    m = torch.tensor([[0.5, 0.5, 1.0]])
    assert torch.equal(max_blend(m, x, r), torch.tensor([[0.25, 0.25, 2.0]]))
    assert torch.equal(blend(m, x, r), torch.tensor([[-0.25, 0.0, 2.0]]))


def test_raw_contributions_are_the_masked_scores(tiny_rn):
    images = [make_image(0)]
    raw = dv.DecomCAM(tiny_rn, n_components=3, contribution="raw")(images, PROMPTS)
    assert torch.equal(raw.contributions, raw.masked_scores)
    gain = dv.DecomCAM(tiny_rn, n_components=3)(images, PROMPTS)
    assert torch.allclose(gain.contributions, gain.masked_scores - gain.reference_score[..., None], atol=1e-6)


def test_the_authors_preset_combines_the_four_choices(tiny_rn):
    images = [make_image(0), make_image(1)]
    cam = dv.make_method("decomcam-authors", tiny_rn, n_components=3)
    p = cam.get_params()
    assert (p["sign"], p["blend"], p["contribution"], p["upsample"]) == ("svd_flip", "max", "raw", "bicubic")
    exp = cam(images, PROMPTS)
    assert torch.equal(exp.contributions, exp.masked_scores)
    ours = dv.DecomCAM(tiny_rn, n_components=3)(images, PROMPTS)
    assert not torch.allclose(exp.masked_scores, ours.masked_scores)      # the max blend sees other images
    with pytest.raises(ValueError, match="blend='max' is a pixel-space blend"):
        dv.DecomCAM(tiny_rn, integration="feature", blend="max")


def test_softmax_of_a_single_prompt_is_refused_with_a_clear_message(tiny_rn):
    for cls in (dv.DecomCAM, dv.GradCAM):
        with pytest.raises(ValueError, match="single prompt is always 1"):
            cls(tiny_rn, score="softmax")(make_image(0), "a red circle")


def test_contrast_prompts_enter_the_softmax_without_being_explained(tiny_rn):
    image = make_image(0)
    exp = dv.GradCAM(tiny_rn, score="softmax", contrast=["a blue square", "a green ring"])(image, "a red circle")
    assert exp.saliency.shape[1] == 1 and exp.prompts == ["a red circle"]
    emb = tiny_rn.encode_image([image])
    text = tiny_rn.encode_text(["a red circle", "a blue square", "a green ring"])
    expected = (tiny_rn.logit_scale * emb @ text.T).softmax(-1)[0, 0]
    assert float(exp.base_score[0, 0]) == pytest.approx(float(expected), rel=1e-5)
    # the same as explaining all three prompts and keeping the first
    full = dv.GradCAM(tiny_rn, score="softmax")(image, ["a red circle", "a blue square", "a green ring"])
    assert torch.allclose(full.saliency[:, :1], exp.saliency, atol=1e-5)
    with pytest.raises(ValueError, match="only change a softmax score"):
        dv.GradCAM(tiny_rn, contrast=["a blue square"])


def test_contrast_reaches_decomcam_integration(tiny_rn):
    image = make_image(1)
    exp = dv.DecomCAM(tiny_rn, n_components=3, score="softmax", contrast=["a blue square"])(image, "a red circle")
    both = dv.DecomCAM(tiny_rn, n_components=3, score="softmax")(image, ["a red circle", "a blue square"])
    assert torch.allclose(exp.masked_scores[0, 0], both.masked_scores[0, 0], atol=1e-5)
    assert exp.params["contrast"] == ["a blue square"]
