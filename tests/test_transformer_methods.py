"""The methods made for transformer towers (LeGrad, Grad-ECLIP, Chefer et al., attention rollout): every ViT family
the adapters know, the refusal of convolutional towers, agreement with the authors' `legrad-torch`, and Grad-ECLIP,
Chefer et al. and rollout against their equations (docs/method.md) computed step by step on a hand-set model."""
import contextlib
import copy
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import decomviz as dv
from decomviz.methods.registry import applies, methods_for
from decomviz.models.attention import NoAttentionError, record_attention
from decomviz.models.taps import hook_count
from tests.conftest import make_image
from tests.tower_zoo import char_tokenizer, hf_model, open_clip_model

pytestmark = pytest.mark.filterwarnings("ignore")

ATTENTION = ["legrad", "grad-eclip", "chefer", "rollout"]
VIT_FAMILIES = ["openclip-vit", "openclip-vit-gap", "openclip-coca-pooler", "timm-siglip", "timm-vit-token",
                "timm-vit-reg", "timm-eva02", "timm-pe-core", "timm-vitamin", "hf-clip", "hf-siglip"]
ROTARY = {"timm-eva02"}  # attention read as probabilities only: grad-eclip is refused


def _net(family, seed=0):
    return hf_model(family[3:], seed) if family.startswith("hf-") else open_clip_model(family, seed)


def _load(net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = char_tokenizer if type(net).__module__.startswith("transformers") else None
        return dv.load_model(net, tokenizer=tok, device="cpu") if tok else dv.load_model(net, device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("family", VIT_FAMILIES)
def test_every_vit_family_records_its_attention_exactly_and_each_method_gives_a_finite_map(family):
    model = _load(_net(family))
    x = model.prepare([make_image(1), make_image(2)]).tensor
    with torch.no_grad():
        plain = model.tower.encode_image(x)
        with record_attention(model) as rec:
            recorded = model.tower.encode_image(x)
    torch.testing.assert_close(recorded, plain, rtol=1e-4, atol=1e-5)  # the recomputed attention is the module's
    for name, _ in rec.spec.attentions:
        probs = rec.attention(name, 0).probs
        torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))
    assert hook_count(model.model) == 0
    for method in ATTENTION:
        if method == "grad-eclip" and family in ROTARY:
            with pytest.raises(NoAttentionError, match="rotary"):
                dv.make_method(method, model)
            continue
        exp = dv.make_method(method, model)([make_image(1), make_image(2)], ["a red circle", "a blue square"])
        assert exp.saliency.shape[:2] == (2, 2) and torch.isfinite(exp.saliency).all(), method
        assert exp.params["method"] == method and exp.params["grid"] == [4, 4]
        assert hook_count(model.model) == 0, method


def test_a_resnet_tower_is_refused_with_the_methods_that_apply(tiny_rn):
    usable = methods_for(tiny_rn)
    assert "decomcam" in usable and "occlusion" in usable and not set(ATTENTION) & set(usable)
    for method in ATTENTION:
        with pytest.raises(NoAttentionError) as err:
            dv.make_method(method, tiny_rn)
        text = str(err.value)
        assert "attention" in text and "resnet" in text and "decomcam, " in text and "occlusion" in text
        assert "legrad" not in text.split("Methods that apply")[1]


@pytest.mark.slow
def test_hooks_are_removed_and_fused_attention_restored_after_an_exception():
    model = _load(_net("timm-eva02"))
    attn = model.model.get_submodule(model.tower.attention_spec().attentions[0][0])
    fused = attn.fused_attn
    with pytest.raises(RuntimeError, match="boom"):
        with record_attention(model):
            assert attn.fused_attn is False
            raise RuntimeError("boom")
    assert hook_count(model.model) == 0 and attn.fused_attn == fused


@pytest.mark.parametrize("method", ATTENTION)
def test_a_batch_of_images_and_prompts_gives_the_maps_of_single_calls(method, tiny_vit):
    images, prompts = [make_image(3), make_image(4)], ["a red circle", "a blue square", "a house"]
    cam = dv.make_method(method, tiny_vit)
    both = cam(images, prompts)
    for b, image in enumerate(images):
        for t, prompt in enumerate(prompts):
            one = cam(image, prompt)
            torch.testing.assert_close(both.saliency_lowres[b, t], one.saliency_lowres[0, 0], rtol=1e-4, atol=1e-6)


def test_the_blocks_knob_chooses_how_many_blocks_enter(tiny_vit):
    image, prompt = make_image(5), "a red circle"
    assert dv.make_method("legrad", tiny_vit).blocks == 2  # legrad-torch's layer_index=-2
    last = dv.make_method("chefer", tiny_vit, blocks=1)(image, prompt).saliency_lowres
    every = dv.make_method("chefer", tiny_vit, blocks=0)(image, prompt).saliency_lowres
    assert not torch.allclose(last, every)
    with pytest.raises(ValueError, match="blocks"):
        dv.make_method("rollout", tiny_vit, blocks=-1)


def test_an_explorer_on_a_vit_lists_and_runs_legrad(tiny_vit, tiny_rn):
    from decomviz.widgets import Explorer
    explorer = Explorer(tiny_vit, n_scenes=1)
    assert "legrad" in [v for _, v in explorer.method_dropdown.options]
    explorer.set_image(make_image(3), name="blobs")
    explorer.set_prompts("a house")
    explorer.set_method("legrad")
    out = explorer.run(wait=True)
    assert out is not None and explorer.explanation.params["method"] == "legrad", explorer.status_text
    assert "legrad" not in [v for _, v in Explorer(tiny_rn, n_scenes=1).method_dropdown.options]


# ---------------------------------------------------------------------------------------- against legrad-torch
@pytest.mark.slow
@pytest.mark.parametrize("family", ["openclip-vit", "openclip-vit-gap", "timm-siglip"])
def test_legrad_agrees_with_the_authors_legrad_torch(family):
    """Median correlation > 0.99 per (image, prompt) with `legrad-torch` 1.1 (installed without its dependencies:
    it pins open_clip <= 2.23). legrad-torch feeds an attention-pool head the block's tokens without the tower's
    final norm; decomviz runs the tower's own head, so the SigLIP tower is compared without a final norm."""
    pytest.importorskip("einops")
    legrad = pytest.importorskip("legrad")
    net = _net(family)
    if family == "timm-siglip":
        net.visual.trunk.norm = torch.nn.Identity()
    reference = copy.deepcopy(net)
    model = _load(net)
    prompts = ["a red circle", "a blue square", "a green house"]
    images = [make_image(i) for i in range(3)]
    exp = dv.make_method("legrad", model)(images, prompts)
    with contextlib.redirect_stdout(io.StringIO()):
        wrapped = legrad.LeWrapper(reference, layer_index=-2)
    text, x = model.encode_text(prompts), model.prepare(images).tensor
    corr = []
    for b in range(len(images)):
        if family.startswith("timm"):  # its SigLIP path sums the prompts: one at a time
            maps = torch.cat([wrapped.compute_legrad(text[t:t + 1], x[b:b + 1], apply_correction=False)[:, 0]
                              for t in range(len(prompts))])
        else:
            maps = wrapped.compute_legrad(text, x[b:b + 1])[0]
        for t in range(len(prompts)):
            a, r = exp.saliency[b, t].flatten().numpy(), maps[t].detach().flatten().numpy()
            corr.append(np.corrcoef(a, r)[0, 1])
    assert np.median(corr) > 0.99, corr
    if family == "timm-siglip":  # legrad-torch's default on SigLIP: the correction by the map of 'a photo of a'
        wrapped.empty_embedding = model.encode_text(["a photo of a"]).T
        exp = dv.make_method("legrad", model, empty_correction=True)(images[0], prompts[0])
        maps = wrapped.compute_legrad(text[:1], x[:1], apply_correction=True)[0, 0]
        assert np.corrcoef(exp.saliency[0, 0].flatten().numpy(), maps.detach().flatten().numpy())[0, 1] > 0.99


# ---------------------------------------------------------------------------------------- against the equations
def _hand_model():
    """A one-block, two-head open_clip ViT on a 2 x 2 patch grid, weights set from a seed."""
    import open_clip
    torch.manual_seed(11)
    net = open_clip.CLIP(embed_dim=6, vision_cfg={"image_size": 64, "layers": 1, "width": 8, "patch_size": 32,
                                                  "head_width": 4},
                         text_cfg={"context_length": 16, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 1})
    for p in net.visual.parameters():  # larger weights than the default init, so that attention is not flat
        p.data.normal_(0, 0.7)
    return _load(net.eval())


def _by_hand(model, x, t):
    """The tower's forward written out from its weights: returns S, the attention A (H, N, N) and its output o
    (N, D) as leaves S depends on, and the block's q, k, v (N, D) and W_O."""
    v_ = model.visual
    blk = v_.transformer.resblocks[0]
    patches = v_.conv1(x).flatten(2)[0].T  # (4, D), row-major
    tokens = torch.cat([v_.class_embedding[None], patches]) + v_.positional_embedding
    tokens = v_.ln_pre(tokens)
    y = blk.ln_1(tokens)
    Wq, Wk, Wv = blk.attn.in_proj_weight.chunk(3)
    bq, bk, bv = blk.attn.in_proj_bias.chunk(3)
    q, k, v = y @ Wq.T + bq, y @ Wk.T + bk, y @ Wv.T + bv
    H, d = 2, 4
    heads = lambda m: m.reshape(-1, H, d).transpose(0, 1)  # noqa: E731
    A = torch.softmax(heads(q) @ heads(k).transpose(1, 2) / d ** 0.5, dim=-1).detach().requires_grad_()
    ctx = (A @ heads(v)).transpose(0, 1).reshape(-1, H * d)
    Wo, bo = blk.attn.out_proj.weight, blk.attn.out_proj.bias
    o = (ctx @ Wo.T + bo).detach().requires_grad_()
    o_from_A = ctx @ Wo.T + bo

    def score(out):
        z = tokens + out
        z = z + blk.mlp(blk.ln_2(z))
        e = v_.ln_post(z[0]) @ v_.proj
        return F.normalize(e, dim=-1) @ t
    return score(o), score(o_from_A), A, o, (q, k, v, Wo)


@pytest.mark.slow
def test_grad_eclip_chefer_and_rollout_match_their_equations_on_a_hand_set_model():
    model = _hand_model()
    image, prompt = make_image(7), "a red circle"
    x = model.prepare(image).tensor
    t = model.encode_text([prompt])[0]
    with torch.enable_grad():
        S_o, S_A, A, o, (q, k, v, Wo) = _by_hand(model, x, t)
        (g,) = torch.autograd.grad(S_o, [o])  # dS/do: only the class token's row is read
        (gA,) = torch.autograd.grad(S_A, [A])
    q, k, v, A = q.detach(), k.detach(), v.detach(), A.detach()
    # Grad-ECLIP: H_i = ReLU(lambda_i * g_cls . (W_O v_i)), lambda = min-max of cos(q_cls, k_i) over patches i
    cos = F.normalize(q[0], dim=-1) @ F.normalize(k[1:], dim=-1).T
    lam = (cos - cos.min()) / (cos.max() - cos.min())
    expected = (lam * ((v[1:] @ Wo.T) @ g[0])).clamp_min(0)
    got = dv.make_method("grad-eclip", model)(image, prompt).saliency_lowres[0, 0].flatten()
    torch.testing.assert_close(got, expected.float(), rtol=1e-4, atol=1e-7)
    assert float(g[1:].abs().max()) == 0.0
    # Chefer et al.: R = I + mean_h (dS/dA * A)^+, the class token's row over the patches
    R = torch.eye(5) + (gA * A).clamp_min(0).mean(0)
    got = dv.make_method("chefer", model)(image, prompt).saliency_lowres[0, 0].flatten()
    torch.testing.assert_close(got, R[0, 1:], rtol=1e-4, atol=1e-7)
    # rollout, one block: 0.5 * mean_h A + 0.5 * I (rows already sum to 1), the class token's row
    got = dv.make_method("rollout", model)(image, prompt).saliency_lowres[0, 0].flatten()
    torch.testing.assert_close(got, 0.5 * A.mean(0)[0, 1:], rtol=1e-5, atol=1e-7)


def test_every_registered_method_that_applies_to_the_bundled_vit_is_one_of_the_registry(tiny_vit):
    assert all(applies(m, tiny_vit) for m in ATTENTION)
    assert set(ATTENTION) <= set(dv.METHODS)


@pytest.mark.slow
def test_the_bench_runs_the_chosen_methods_where_they_apply(tmp_path):
    from decomviz.apps.bench.runner import run_bench
    res = run_bench(["parts-vit", "parts-rn"], quick=True, out=tmp_path, only=["softmax_localisation", "sanity"],
                    scenes=1, methods=["decomcam", "legrad", "rollout"], log=lambda m: None)
    assert set(res["models"]["parts-vit"]["softmax_localisation"]) == {"decomcam", "legrad", "rollout"}
    assert set(res["models"]["parts-rn"]["softmax_localisation"]) == {"decomcam"}
    assert set(res["models"]["parts-vit"]["sanity"]) == {"decomcam", "legrad", "rollout"}
    assert "| legrad |" in (tmp_path / "results.md").read_text() and res["methods"] == ["decomcam", "legrad", "rollout"]
