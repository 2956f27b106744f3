"""Property-based tests of the engine: whatever the model, image and knobs, the result is well-formed."""
import warnings

import pytest

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import decomviz as dv

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))

images = st.one_of(
    arrays(np.uint8, st.tuples(st.integers(1, 80), st.integers(1, 80), st.just(3))),
    arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))),
    st.builds(lambda v: np.full((32, 32, 3), v, np.uint8), st.integers(0, 255)),  # constant images
)
prompts = st.lists(st.text(min_size=1, max_size=30).filter(lambda s: s.strip()), min_size=1, max_size=3)
knobs = st.fixed_dictionaries({
    "n_components": st.integers(1, 20), "top_channels": st.integers(1, 600), "center": st.booleans(),
    "sign": st.sampled_from(["gradcam", "both"]), "score": st.sampled_from(["cosine", "logit", "softmax"]),
    "weight_norm": st.sampled_from(["max", "minmax"]), "integration": st.sampled_from(["pixel", "feature", "none"]),
    "blur_sigma": st.floats(0.5, 40), "weight_threshold": st.floats(0, 0.5), "batch_size": st.integers(1, 64),
})


def _well_formed(exp):
    K = exp.n_components
    assert torch.isfinite(exp.saliency).all() and exp.saliency.min() >= 0 and exp.saliency.max() <= 1
    for name in ("ossms", "weights", "singular_values", "u", "v", "explained_variance"):
        assert torch.isfinite(getattr(exp, name)).all(), name
    assert (exp.weights >= 0).all() and (exp.weights <= 1 + 1e-6).all()
    s = exp.singular_values
    assert (s[..., :-1] >= s[..., 1:] - 1e-5 * s[..., :1]).all()  # sorted
    live = ~(s <= 1e-6 * s[..., :1])  # numerically non-null components are orthonormal
    gram = exp.u @ exp.u.transpose(-1, -2)
    eye = torch.eye(K).expand_as(gram)
    pair_live = live[..., :, None] & live[..., None, :]
    assert torch.allclose(gram[pair_live], eye[pair_live], atol=1e-3)
    assert torch.allclose(exp.combine(), exp.saliency, atol=1e-5)
    for flag in exp.flags.values():
        assert flag.dtype == torch.bool and flag.shape == exp.saliency.shape[:2]


@SETTINGS
@given(which=st.sampled_from(["tiny_rn", "tiny_vit"]), image=images, texts=prompts, kw=knobs)
def test_any_input_gives_a_well_formed_explanation(request, which, image, texts, kw):
    model = request.getfixturevalue(which)
    if kw["score"] == "softmax" and len(texts) == 1:   # a softmax over one prompt is refused, never a flat map
        with pytest.raises(ValueError, match="single prompt"):
            dv.DecomCAM(model, **kw)(image, texts)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = dv.DecomCAM(model, **kw)(image, texts)
    _well_formed(exp)
    if kw["integration"] != "none" and exp.flags["no_positive_contribution"].any():
        bad = exp.flags["no_positive_contribution"]
        assert (exp.contributions.amax(-1)[bad] <= 0).all()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(which=st.sampled_from(["tiny_rn", "tiny_vit"]), seed=st.integers(0, 10_000), k=st.integers(1, 6))
def test_batch_and_prompt_consistency_property(request, which, seed, k):
    from tests.test_engine import assert_pairs_consistent
    model = request.getfixturevalue(which)
    rng = np.random.default_rng(seed)
    imgs = [(rng.random((40, 50, 3)) * 255).astype(np.uint8) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_pairs_consistent(dv.DecomCAM(model, n_components=k), imgs, ["a red circle", "a dog"])


def test_zero_gradient_is_flagged_not_nan(tiny_vit):
    # the last ViT block's patch tokens get exactly zero gradient
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = dv.DecomCAM(tiny_vit, layer=tiny_vit.layers[-1], n_components=3)(np.zeros((8, 8, 3), np.uint8), "x")
    assert exp.flags["zero_gradient"].all() and exp.flags["empty_map"].all()
    assert torch.isfinite(exp.saliency).all() and exp.saliency.abs().sum() == 0
    assert torch.isfinite(exp.u).all()
