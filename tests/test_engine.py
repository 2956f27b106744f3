
import numpy as np
import pytest
import torch

import decomviz as dv
from decomviz.ops import clip_score
from decomviz.methods.decomcam import decompose, integration_weights
from decomviz.explanation import combine_ossms
from decomviz.models.taps import hook_count, tap
from tests.conftest import make_image

PROMPTS = ["a red circle", "a blue square"]


def _check_explanation(exp, B, T, K, grid):
    H, W = exp.saliency.shape[-2:]
    n = grid[0] * grid[1]
    assert exp.saliency.shape == (B, T, H, W)
    assert exp.ossms.shape == (B, T, K, H, W)
    assert exp.ossms_lowres.shape == (B, T, K, *grid)
    assert exp.u.shape == (B, T, K, n)
    for name in ("singular_values", "weights", "contributions", "explained_variance", "masked_scores"):
        assert getattr(exp, name).shape == (B, T, K), name
    assert exp.base_score.shape == exp.reference_score.shape == (B, T)
    assert exp.images.shape == (B, H, W, 3) and exp.images.dtype == torch.uint8
    assert torch.isfinite(exp.saliency).all()
    assert exp.saliency.min() >= 0 and exp.saliency.max() <= 1
    # u orthonormal, components sorted by singular value
    gram = exp.u @ exp.u.transpose(-1, -2)
    assert torch.allclose(gram, torch.eye(K).expand_as(gram), atol=1e-4)
    assert (exp.singular_values[..., :-1] >= exp.singular_values[..., 1:] - 1e-6).all()
    assert torch.allclose(exp.combine(), exp.saliency, atol=1e-6)


@pytest.mark.parametrize("fixture,grid", [("rn50", (7, 7)), ("vitb16", (14, 14))])
def test_shapes_on_real_architectures(request, fixture, grid, images):
    model = request.getfixturevalue(fixture)
    exp = dv.DecomCAM(model, n_components=4)(images, PROMPTS)
    _check_explanation(exp, 2, 2, 4, grid)
    assert exp.channels.shape == (2, 2, 500)
    assert exp.embeddings.shape[:3] == (2, 2, 4)
    assert torch.allclose(exp.embeddings.norm(dim=-1), torch.ones(2, 2, 4), atol=1e-4)
    assert exp.params["layer"] == model.default_layer
    assert hook_count(model.model) == 0


def test_tiny_models_shapes_and_protocol(tiny, images):
    exp = dv.DecomCAM(tiny, n_components=3, top_channels=20)(images, PROMPTS)
    grid = tuple(exp.params["grid"])
    _check_explanation(exp, 2, 2, 3, grid)
    assert exp.channels.shape == (2, 2, 20)
    p = exp.params
    for key in ("model", "layer", "n_components", "top_channels", "center", "sign", "blur_sigma", "score",
                "weight_threshold", "weight_norm", "integration", "versions"):
        assert key in p, key
    assert p["versions"]["torch"] == torch.__version__


def test_deterministic(tiny_rn, images):
    cam = dv.DecomCAM(tiny_rn, n_components=3, top_channels=32)
    a, b = cam(images, PROMPTS), cam(images, PROMPTS)
    assert torch.equal(a.saliency, b.saliency)
    assert torch.equal(a.weights, b.weights)


def assert_pairs_consistent(cam, images, prompts, atol=1e-4):
    """A batch of images x prompts equals one call per (image, prompt) pair.

    Every computed quantity must agree to atol. The normalised weights w = d / max d are compared with a bound
    derived from how far the contributions differ (float32 rounding differs with the forward's batch size);
    on random-weight models d is ~1e-5, so w amplifies that rounding. Trained models get the plain atol.
    """
    both = cam(images, prompts)
    for b in range(len(images)):
        for t in range(len(prompts)):
            single = cam(images[b], prompts[t])
            for name in ("base_score", "reference_score", "contributions", "masked_scores", "singular_values",
                         "ossms", "ossms_lowres"):
                got, want = getattr(both, name)[b, t], getattr(single, name)[0, 0]
                assert torch.allclose(got, want, atol=atol), (name, b, t, (got - want).abs().max())
            # the kept channels' gradient weights agree in order; channels whose weights tie to float32 rounding
            # (which differs with the batch size) may swap places, as a property test found on a random model
            kept_both = both.alpha[b, t].gather(-1, both.channels[b, t])
            kept_single = single.alpha[0, 0].gather(-1, single.channels[0, 0])
            a_tol = 1e-4 * float(both.alpha[b, t].abs().max())
            assert torch.allclose(kept_both, kept_single, rtol=0, atol=a_tol)
            assert (both.channels[b, t] == single.channels[0, 0]).float().mean() >= 0.9
            d_err = (both.contributions[b, t] - single.contributions[0, 0]).abs().max()
            top = both.contributions[b, t].max().clamp_min(1e-12)
            w_tol = max(atol, float(4 * d_err / top))
            assert torch.allclose(both.weights[b, t], single.weights[0, 0], atol=w_tol)
            if w_tol == atol:
                assert torch.allclose(both.saliency[b, t], single.saliency[0, 0], atol=atol)
            recombined = combine_ossms(single.ossms[0, 0], both.weights[b, t])
            assert torch.allclose(both.saliency[b, t], recombined, atol=atol)


@pytest.mark.parametrize("fixture", ["tiny_rn", "tiny_vit", "rn50"])
def test_batch_and_prompt_consistency(request, fixture, images):
    model = request.getfixturevalue(fixture)
    assert_pairs_consistent(dv.DecomCAM(model, n_components=3, top_channels=64, score="cosine"), images, PROMPTS)


@pytest.mark.parametrize("fixture", ["tiny_rn", "tiny_vit"])
def test_batched_backward_equals_separate_backwards(request, fixture, images):
    model = request.getfixturevalue(fixture)
    cam = dv.GradCAM(model)
    x = model.prepare(images).tensor
    text = model.encode_text(["one", "two", "three"])
    tapped = cam._tapped(x, text)
    for t in range(3):
        with tap(model, cam.layer) as tp:
            s = clip_score(model.embed(x), text, "cosine", model.logit_scale)[:, t].sum()
            (g,) = torch.autograd.grad(s, tp.raw)
            expected = tp.grid(g)
        assert torch.allclose(tapped.gradients[:, t], expected, atol=1e-6)


def test_no_gradients_on_weights_and_text_cached(tiny_rn, images):
    calls = []
    original = tiny_rn.model.encode_text

    def counting(tokens, *a, **k):
        calls.append(tokens.shape[0])
        return original(tokens, *a, **k)

    tiny_rn.model.encode_text = counting
    try:
        tiny_rn._text_cache.clear()
        dv.DecomCAM(tiny_rn, n_components=2)(images, PROMPTS)
        dv.GradCAM(tiny_rn)(images, PROMPTS)
    finally:
        tiny_rn.model.encode_text = original
    assert calls == [2]  # both prompts encoded once, in one batch
    assert all(p.grad is None and not p.requires_grad for p in tiny_rn.model.parameters())


def test_hooks_removed_after_exception(tiny_rn, images):
    cam = dv.DecomCAM(tiny_rn, n_components=2)

    def boom(x):
        raise RuntimeError("boom")

    original = tiny_rn.model.visual.attnpool.forward
    tiny_rn.model.visual.attnpool.forward = boom
    try:
        with pytest.raises(RuntimeError, match="boom"):
            cam(images, PROMPTS)
    finally:
        tiny_rn.model.visual.attnpool.forward = original
    assert hook_count(tiny_rn.model) == 0
    cam(images, PROMPTS)  # still works
    assert hook_count(tiny_rn.model) == 0


def test_vit_sequence_first_layout_gives_same_result(tiny_dirs, images):
    a = dv.load_model(checkpoint=tiny_dirs["vit"], device="cpu")
    b = dv.load_model(checkpoint=tiny_dirs["vit"], device="cpu")
    b.visual.transformer.batch_first = False  # the older (N, B, D) layout, as open_clip < 2.2 ran
    for blk in b.visual.transformer.resblocks:
        blk.attn.batch_first = False
    ea = dv.DecomCAM(a, n_components=3)(images, PROMPTS)
    eb = dv.DecomCAM(b, n_components=3)(images, PROMPTS)
    assert torch.allclose(ea.saliency, eb.saliency, atol=1e-5)
    assert torch.allclose(ea.alpha, eb.alpha, atol=1e-6)


def test_vit_grid_inferred_from_model(tiny_vit, vitb16):
    img = make_image(3)
    assert tuple(dv.GradCAM(tiny_vit)(img, "x").saliency_lowres.shape[-2:]) == (4, 4)
    assert tuple(dv.GradCAM(vitb16)(img, "x").saliency_lowres.shape[-2:]) == (14, 14)
    assert vitb16.default_layer == "visual.transformer.resblocks.10"


def test_last_vit_block_has_zero_patch_gradient(tiny_vit):
    """Why the default ViT tap is the input of the last block (docs/method.md)."""
    last = tiny_vit.layers[-1]
    out = dv.GradCAM(tiny_vit, layer=last)._tapped(tiny_vit.prepare(make_image(0)).tensor,
                                                    tiny_vit.encode_text(["x"]))
    assert out.gradients.abs().max() == 0
    good = dv.GradCAM(tiny_vit)._tapped(tiny_vit.prepare(make_image(0)).tensor, tiny_vit.encode_text(["x"]))
    assert good.gradients.abs().max() > 0


def test_decompose_matches_numpy_svd():
    torch.manual_seed(0)
    A = torch.rand(1, 12, 3, 3)
    G = torch.randn(1, 1, 12, 3, 3)
    dec = decompose(A, G, top_channels=5, n_components=3, center=False)
    alpha = G.mean(dim=(-2, -1))[0, 0]
    keep = np.argsort(-alpha.numpy(), kind="stable")[:5]
    assert dec.channels[0, 0].tolist() == keep.tolist()
    X = (alpha[keep, None] * A[0].reshape(12, 9)[keep]).T.numpy()
    s = np.linalg.svd(X, compute_uv=False)
    assert np.allclose(dec.singular_values[0, 0].numpy(), s[:3], atol=1e-5)
    gradcam = X.sum(1)
    for k in range(3):  # oriented to correlate positively with the Grad-CAM map
        assert np.corrcoef(dec.u[0, 0, k].numpy(), gradcam)[0, 1] >= 0


def test_integration_weights_rules():
    d = torch.tensor([[0.4, 0.2, -0.1, 0.001]])
    w = integration_weights(d, 0.01, "max")
    assert torch.allclose(w, torch.tensor([[1.0, 0.5, 0.0, 0.0]]))
    w = integration_weights(d, 0.0, "minmax")
    assert torch.allclose(w, (d + 0.1) / 0.5)
    assert integration_weights(torch.tensor([[-0.1, -0.2]]), 0.01, "max").abs().sum() == 0


def test_no_positive_contribution_is_flagged(tiny_rn, images, monkeypatch):
    cam = dv.DecomCAM(tiny_rn, n_components=3)
    monkeypatch.setattr(cam, "_score_masked", lambda x, ref, ossms, text: (
        torch.zeros(*ossms.shape[:3], 32), torch.full(ossms.shape[:3], -5.0), torch.zeros(ossms.shape[:2])))
    with pytest.warns(UserWarning, match="No component raised the score"):
        exp = cam(images, PROMPTS)
    assert exp.flags["no_positive_contribution"].all()
    assert exp.saliency.abs().sum() == 0


def test_sign_both_keeps_the_better_orientation(tiny_rn, images):
    exp = dv.DecomCAM(tiny_rn, n_components=3, sign="both")(images, PROMPTS)
    ref = dv.DecomCAM(tiny_rn, n_components=3)(images, PROMPTS)
    assert (exp.contributions >= ref.contributions - 1e-5).all()
    assert torch.allclose(exp.singular_values, ref.singular_values)


def test_no_integration_ablation(tiny_rn, images):
    exp = dv.DecomCAM(tiny_rn, n_components=3, integration="none")(images, PROMPTS)
    assert exp.method == "decomcam-nointegration"
    assert exp.contributions is None
    assert torch.allclose(exp.weights, exp.singular_values / exp.singular_values[..., :1])
    assert torch.allclose(exp.combine(weighting="singular"), exp.saliency, atol=1e-6)


@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_other_scores(tiny_rn, images, score):
    exp = dv.DecomCAM(tiny_rn, n_components=2, score=score)(images, PROMPTS)
    if score == "softmax":
        assert torch.allclose(exp.base_score.sum(-1), torch.ones(2), atol=1e-5)
    assert torch.isfinite(exp.saliency).all()


def test_combine_subsets(tiny_rn, images):
    exp = dv.DecomCAM(tiny_rn, n_components=4)(images, PROMPTS)
    first = exp.combine([0])
    manual = exp.ossms[:, :, 0] * exp.weights[:, :, 0, None, None]
    lo, hi = manual.amin((-2, -1), keepdim=True), manual.amax((-2, -1), keepdim=True)
    expected = torch.where(hi > lo, (manual - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(manual))
    assert torch.allclose(first, expected, atol=1e-5)
    assert torch.allclose(exp.combine(torch.tensor([True, False, False, False])), first)
    assert exp.combine([]).abs().sum() == 0
    with pytest.raises(IndexError):
        exp.combine([7])


def test_save_load_roundtrip(tiny_rn, images, tmp_path):
    exp = dv.DecomCAM(tiny_rn, n_components=3)(images, PROMPTS)
    exp.save(tmp_path / "e.npz")
    back = dv.Explanation.load(tmp_path / "e.npz")
    assert back.prompts == exp.prompts and back.method == exp.method and back.params == exp.params
    for name in ("saliency", "ossms", "u", "v", "weights", "contributions", "channels", "images", "embeddings"):
        assert torch.equal(getattr(back, name), getattr(exp, name)), name
    assert set(back.flags) == set(exp.flags)
    assert torch.equal(back.combine([1]), exp.combine([1]))


def test_select_and_figure(tiny_rn, images):
    exp = dv.DecomCAM(tiny_rn, n_components=3)(images, PROMPTS)
    one = exp.select(1, "a blue square")
    assert one.saliency.shape[:2] == (1, 1) and torch.equal(one.saliency[0, 0], exp.saliency[1, 1])
    fig = exp.figure(1, 1)
    heat = [tr for tr in fig.data if tr.type == "heatmap"]
    assert len(heat) == 1  # the overlay's hover layer: 8 x 8 px block means of the map
    sal = exp.saliency[1, 1].numpy()
    H, W = sal.shape
    assert np.allclose(np.asarray(heat[0].z), sal[:H - H % 8, :W - W % 8].reshape(H // 8, 8, W // 8, 8).mean((1, 3)),
                       atol=1e-3)
    thumbs = [tr for tr in fig.data if tr.type == "image" and (tr.name or "").startswith("ossm")]
    assert len(thumbs) == 3 and all(t.source.startswith("data:image/") for t in thumbs)  # each OSSM over the image


def test_figure_spectrum_ticks_stay_readable(tiny_rn, images):
    exp = dv.DecomCAM(tiny_rn, n_components=12)(images[:1], PROMPTS[:1])
    fig = exp.figure()
    bar = next(tr for tr in fig.data if tr.type == "bar")
    axis = fig.layout["xaxis" + bar.xaxis[1:]]
    assert axis.dtick == 2 and axis.showticklabels            # 12 components: every other number


@pytest.mark.parametrize("fixture", ["tiny_rn", "tiny_vit", "vitb16"])
def test_forward_from_tap_equals_full_forward(request, fixture):
    model = request.getfixturevalue(fixture)
    x = model.prepare([make_image(0), make_image(1)]).tensor
    for layer in (model.default_layer, model.layers[0]):
        with tap(model, layer, requires_grad=False) as t, torch.no_grad():
            full = model.model.encode_image(x)
        with torch.no_grad():
            tail = model.forward_from(layer, t.raw)
        assert torch.allclose(full, tail, atol=1e-4), layer


@pytest.mark.parametrize("fixture", ["tiny_rn", "tiny_vit"])
def test_feature_integration(request, fixture, images):
    model = request.getfixturevalue(fixture)
    feat = dv.DecomCAM(model, n_components=3, integration="feature")(images, PROMPTS)
    pix = dv.DecomCAM(model, n_components=3)(images, PROMPTS)
    assert feat.method == "decomcam-feature"
    assert torch.allclose(feat.ossms, pix.ossms) and torch.allclose(feat.reference_score, pix.reference_score, atol=1e-5)
    assert feat.contributions.shape == pix.contributions.shape and torch.isfinite(feat.saliency).all()
    # a full mask restores the image's own score exactly: check the blend with all-ones masks
    x = model.prepare(images).tensor
    tapped = dv.GradCAM(model)._tapped(x, model.encode_text(PROMPTS), gradients=False)
    h, w = tapped.activations.shape[-2:]
    blended = tapped.tap.blend(torch.arange(2), torch.zeros_like(tapped.tap.raw), torch.ones(2, h, w))
    with torch.no_grad():
        emb = torch.nn.functional.normalize(model.forward_from(model.default_layer, blended), dim=-1)
    assert torch.allclose(emb, model.embed(x), atol=1e-4)


def test_blended_attention_pool_equals_the_pool_on_each_blend(tiny_rn):
    from decomviz.models.attnpool import BlendedAttentionPool
    pool = tiny_rn.visual.attnpool
    torch.manual_seed(0)
    C = pool.positional_embedding.shape[1]
    a, r = torch.randn(3, C, 4, 4), torch.randn(3, C, 4, 4)
    index, masks = torch.tensor([2, 0, 0, 1, 2]), torch.rand(5, 4, 4)
    masks[0] = 1.0   # all of a: the pool of a itself
    masks[1] = 0.0   # all of r
    with torch.no_grad():
        want = pool(masks[:, None] * a[index] + (1 - masks[:, None]) * r[index])
        got = BlendedAttentionPool(pool, a, r)(index, masks)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(got[0], pool(a[2:3])[0], atol=1e-5)


def test_feature_integration_fast_pool_matches_running_the_tail(tiny_rn, images, monkeypatch):
    import decomviz.methods.decomcam as decomcam_module
    fast = dv.DecomCAM(tiny_rn, n_components=3, integration="feature")(images, PROMPTS)
    monkeypatch.setattr(decomcam_module, "is_attention_pool", lambda module: False)   # the generic tail
    slow = dv.DecomCAM(tiny_rn, n_components=3, integration="feature")(images, PROMPTS)
    assert torch.allclose(fast.masked_scores, slow.masked_scores, atol=1e-5)
    assert torch.allclose(fast.saliency, slow.saliency, atol=2e-3)   # maps of tiny score differences


def test_svd_driver_is_a_gpu_knob_ignored_on_the_cpu(tiny_rn, images):
    default = dv.DecomCAM(tiny_rn, n_components=3, svd_driver=None)(images, PROMPTS)
    gesvda = dv.DecomCAM(tiny_rn, n_components=3, svd_driver="gesvda")(images, PROMPTS)
    assert torch.equal(default.singular_values, gesvda.singular_values) and torch.equal(default.saliency, gesvda.saliency)
    assert gesvda.params["svd_driver"] == "gesvda"          # recorded in the protocol all the same
