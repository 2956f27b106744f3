"""Occlusion on models whose answer is known: a tower that reads one square region, and a naive loop."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import decomviz as dv
from decomviz.methods.occlusion import window_indicators, window_starts
from decomviz.methods.registry import METHODS
from decomviz.ops import blurred_reference
from tests.conftest import make_image

PROMPT = "a photo of a checkerboard"
REGION = (40, 72, 72, 104)  # rows y0:y1, columns x0:x1 of the 128 px input the stand-in tower reads
# windows of 64 px every 32 px at 128 px: starts 0, 32, 64 in each direction, 9 windows
BIG = dict(window=112, stride=56)


class StandIn(torch.nn.Module):
    """A stand-in image tower (the text tower stays the tiny model's): counts and keeps what it sees."""

    def __init__(self):
        super().__init__()
        self.seen, self.inputs = 0, []

    def forward(self, x):
        self.seen += len(x)
        self.inputs.append(x.detach().clone())
        return self.embed(x)


class RegionTower(StandIn):
    """An embedding that depends only on the pixels of REGION: m(x) u + v, with m the mean squared (normalised)
    pixel value in the region, u the text embedding of PROMPT and v a unit vector orthogonal to it.
    cos(f(x), u) = m / sqrt(m^2 + 1) rises with m, so hiding any part of a high-contrast region lowers the score,
    and hiding pixels outside it changes nothing."""

    def __init__(self, u: torch.Tensor, v: torch.Tensor):
        super().__init__()
        self.register_buffer("u", u)
        self.register_buffer("v", v)

    def embed(self, x):
        y0, y1, x0, x1 = REGION
        m = x[:, :, y0:y1, x0:x1].pow(2).mean(dim=(1, 2, 3))
        return m[:, None] * self.u + self.v


class PoolTower(StandIn):
    """Every pixel matters, each place differently: a fixed random linear map of the 8 x 8 average-pooled image
    (unlike the tiny random CLIP, whose scores barely move, so its maps are float noise once normalised)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("w", torch.randn(3 * 16 * 16, dim, generator=torch.Generator().manual_seed(1)))

    def embed(self, x):
        return F.avg_pool2d(x, 8).flatten(1) @ self.w


def _with_tower(model, tower):
    model.model.visual = tower.eval()
    return model


@pytest.fixture
def region_model(tiny_rn):
    model = tiny_rn.clone()
    u = model.encode_text([PROMPT])[0]
    v = torch.randn(u.shape[0], generator=torch.Generator().manual_seed(0))
    return _with_tower(model, RegionTower(u, F.normalize(v - (v @ u) * u, dim=0)))


@pytest.fixture
def pool_model(tiny_rn):
    model = tiny_rn.clone()
    return _with_tower(model, PoolTower(model.encode_text([PROMPT]).shape[1]))


def checkerboard_image(size=128):
    """Mid-grey everywhere, a black-and-white 4 px checkerboard in REGION."""
    img = np.full((size, size, 3), 128, np.uint8)
    y0, y1, x0, x1 = REGION
    yy, xx = np.mgrid[y0:y1, x0:x1]
    img[y0:y1, x0:x1] = (((yy // 4 + xx // 4) % 2) * 255)[..., None].astype(np.uint8)
    return img


def naive_occlusion(model, image, prompt, window_px, stride_px, fill, blur_sigma=10.0):
    """The definition, one window at a time: mean drop of the cosine over the windows covering each pixel."""
    x = model.prepare(image).tensor
    text = model.encode_text([prompt])
    ref = blurred_reference(x, blur_sigma) if fill == "blur" else torch.zeros_like(x)
    H, W = x.shape[-2:]
    with torch.no_grad():
        base = float(model.embed(x) @ text[0])
        total, count, drops = torch.zeros(H, W), torch.zeros(H, W), []
        for y in window_starts(H, window_px, stride_px):
            row = []
            for x0 in window_starts(W, window_px, stride_px):
                xo = x.clone()
                xo[..., y:y + window_px, x0:x0 + window_px] = ref[..., y:y + window_px, x0:x0 + window_px]
                d = base - float(model.embed(xo) @ text[0])
                total[y:y + window_px, x0:x0 + window_px] += d
                count[y:y + window_px, x0:x0 + window_px] += 1
                row.append(d)
            drops.append(row)
    return total / count, torch.tensor(drops)


# ---------------------------------------------------------------------------------------------- the answer
def test_the_map_peaks_on_the_region_the_model_reads_and_is_zero_far_from_it(region_model):
    exp = dv.Occlusion(region_model, window=28, stride=14)(checkerboard_image(), [PROMPT])  # 16 px every 8 px
    sal = exp.saliency[0, 0]
    assert sal.shape == (128, 128) and float(sal.min()) >= 0 and float(sal.max()) == pytest.approx(1.0)
    y0, y1, x0, x1 = REGION
    peak = divmod(int(sal.argmax()), 128)
    assert y0 <= peak[0] < y1 and x0 <= peak[1] < x1
    assert float(sal[y0:y1, x0:x1].min()) > 0.2  # every pixel of the region matters
    side = exp.params["window_px"]
    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    dist = torch.maximum((y0 - yy).clamp_min(0) + (yy - y1 + 1).clamp_min(0),
                         (x0 - xx).clamp_min(0) + (xx - x1 + 1).clamp_min(0))
    far = dist >= side  # no window over these pixels reaches the region
    assert far.sum() > 128 * 128 // 2 and float(sal[far].max()) < 1e-4
    assert not bool(exp.flags["empty_map"].any())
    # the raw drops: positive exactly for windows that overlap the region
    starts = window_starts(128, side, exp.params["stride_px"])
    overlaps = torch.tensor([[(s < y1 and s + side > y0) and (t < x1 and t + side > x0) for t in starts]
                             for s in starts])
    lowres = exp.saliency_lowres[0, 0]
    assert lowres.shape == (len(starts), len(starts))
    assert float(lowres[overlaps].min()) > 1e-3 and float(lowres[~overlaps].abs().max()) < 1e-6  # float noise


@pytest.mark.parametrize("fill", ["blur", "gray"])
@pytest.mark.parametrize("which", ["pool_model", "tiny_rn"])
def test_agrees_with_a_naive_loop_over_windows(request, which, fill):
    model = request.getfixturevalue(which)
    image = make_image(3)
    exp = dv.Occlusion(model, fill=fill, **BIG)(image, [PROMPT, "a red circle"])
    assert exp.params["window_px"] == 64 and exp.params["stride_px"] == 32 and exp.params["grid"] == [3, 3]
    mean, drops = naive_occlusion(model, image, PROMPT, 64, 32, fill)
    # the tiny random CLIP's drops are ~1e-4, so batch-dependent float noise (~1e-7) is compared relatively
    tol = 1e-6 if which == "pool_model" else 1e-2 * float(drops.abs().max())
    assert float(drops.abs().max()) > 1e-5 and torch.allclose(exp.saliency_lowres[0, 0], drops, atol=tol)
    expected = mean.clamp_min(0)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    assert torch.allclose(exp.saliency[0, 0], expected, atol=1e-4 if which == "pool_model" else 2e-2)
    score = float(model.encode_image(image)[0] @ model.encode_text([PROMPT])[0])
    assert float(exp.base_score[0, 0]) == pytest.approx(score, abs=1e-5)


def test_nothing_to_lose_gives_an_empty_map_not_nan(region_model):
    x = torch.zeros(1, 3, 128, 128)  # normalised zero in the region: the gray fill changes nothing there
    x[..., 0, 0] = -1.0  # (outside the region; a value outside [0, 1] marks the tensor as normalised)
    exp = dv.Occlusion(region_model, fill="gray", **BIG)(x, [PROMPT])
    assert bool(exp.flags["empty_map"].all()) and float(exp.saliency.abs().max()) == 0.0
    assert torch.isfinite(exp.saliency).all()


# ---------------------------------------------------------------------------------------------- windows
@pytest.mark.parametrize("size,window,stride", [
    (128, 18, 9), (224, 32, 16), (224, 32, 32), (100, 30, 30), (100, 30, 7), (97, 1, 1), (10, 10, 3),
    (50, 64, 10), (7, 3, 2), (225, 32, 17)])
def test_windows_cover_every_pixel_and_the_last_is_flush(size, window, stride):
    starts = window_starts(size, window, stride)
    assert starts[0] == 0 and starts[-1] + min(window, size) == size
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))
    cover = window_indicators(size, window, stride)
    assert cover.shape == (len(starts), size) and bool((cover.sum(0) >= 1).all())
    assert bool((cover.sum(1) == min(window, size)).all())


@pytest.mark.parametrize("window,stride", [(32, 16), (32, 32), (28, 5), (1, 1), (224, 224), (50, 49)])
@pytest.mark.parametrize("size", [(128, 128), (224, 224), (300, 200)])
def test_the_method_s_windows_cover_every_pixel_at_any_input_size(tiny_rn, window, stride, size):
    side, step, rows, cols = dv.Occlusion(tiny_rn, window=window, stride=stride).windows(size)
    assert side == max(1, round(window * size[1] / 224)) and 1 <= step <= side
    count = rows.sum(0)[:, None] * cols.sum(0)[None, :]
    assert count.shape == size and bool((count >= 1).all())


# ---------------------------------------------------------------------------------------------- fills
@pytest.mark.parametrize("fill", ["blur", "gray"])
def test_the_window_is_filled_and_the_rest_is_the_image(region_model, fill):
    occ = dv.Occlusion(region_model, fill=fill, blur_sigma=6.0, **BIG)
    tower = region_model.model.visual
    image = make_image(2, 128, 128)
    occ(image, [PROMPT])
    seen = torch.cat(tower.inputs)
    x = region_model.prepare(image).tensor
    ref = blurred_reference(x, 6.0) if fill == "blur" else torch.zeros_like(x)
    assert torch.equal(seen[0], x[0])  # the image itself, for s(x, t)
    inside = torch.zeros(128, 128, dtype=torch.bool)
    inside[32:96, 64:128] = True  # window (1, 2): rows from 32, columns from 64
    occluded = seen[1 + 1 * 3 + 2]
    assert torch.allclose(occluded[:, inside], ref[0][:, inside], atol=1e-6)
    assert torch.allclose(occluded[:, ~inside], x[0][:, ~inside], atol=1e-6)


def test_gray_and_blur_fills_give_different_maps(tiny_rn):
    image = make_image(1)
    blur = dv.Occlusion(tiny_rn, fill="blur", **BIG)(image, [PROMPT])
    gray = dv.Occlusion(tiny_rn, fill="gray", **BIG)(image, [PROMPT])
    assert not torch.allclose(blur.saliency_lowres, gray.saliency_lowres, atol=1e-4)
    # the unoccluded image's score whatever the fill; its batch holds other windows, so to a float tolerance
    assert torch.allclose(blur.base_score, gray.base_score, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- cost
@pytest.mark.parametrize("n_prompts", [1, 4])
def test_one_forward_per_window_per_image_whatever_the_number_of_prompts(region_model, n_prompts):
    prompts = [PROMPT, "a red circle", "a dog", "a house"][:n_prompts]
    exp = dv.Occlusion(region_model, batch_size=5, **BIG)([checkerboard_image(), make_image(0)], prompts)
    assert exp.params["windows"] == 9 and exp.params["forwards_per_image"] == 10
    assert region_model.model.visual.seen == 2 * 10
    assert max(len(x) for x in region_model.model.visual.inputs) <= 5
    assert exp.saliency.shape == (2, n_prompts, 128, 128) and exp.base_score.shape == (2, n_prompts)


def test_batch_size_does_not_change_the_result(pool_model):
    images = [make_image(0), make_image(1)]
    prompts = [PROMPT, "a red circle"]
    runs = [dv.Occlusion(pool_model, batch_size=b, **BIG)(images, prompts) for b in (1, 4, 64)]
    assert float(runs[0].saliency_lowres.abs().max()) > 1e-2
    for other in runs[1:]:
        assert torch.allclose(runs[0].saliency_lowres, other.saliency_lowres, atol=1e-6)
        assert torch.allclose(runs[0].saliency, other.saliency, atol=1e-4)
        # the same scores reached through batches of another size: float32 kernels may round the last bits
        # differently with the batch's shape and the CPU, so agree to a tolerance, not bit for bit
        assert torch.allclose(runs[0].base_score, other.base_score, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- knobs
def test_knobs_registry_and_record(tiny_rn, tmp_path):
    spec = METHODS["occlusion"]
    assert spec.cls is dv.Occlusion and spec.label == "Occlusion"
    assert "layer" not in spec.knobs and {"window", "stride", "fill", "blur_sigma", "score"} <= set(spec.knobs)
    occ = dv.make_method("occlusion", tiny_rn, window=40, fill="gray", score="logit")
    assert set(occ.get_params()) == set(spec.knobs) and occ.get_params()["window"] == 40
    exp = occ(make_image(0), ["a red circle", "a dog"])
    assert exp.method == "occlusion" and exp.params["fill"] == "gray" and exp.params["score"] == "logit"
    assert "layer" not in exp.params
    exp.save(tmp_path / "e.npz")
    back = dv.Explanation.load(tmp_path / "e.npz")
    assert back.params["forwards_per_image"] == exp.params["forwards_per_image"]
    assert torch.equal(back.saliency, exp.saliency)
    # contrast prompts enter the softmax and are not explained, as for every method
    soft = dv.Occlusion(tiny_rn, score="softmax", contrast=["a dog"], **BIG)(make_image(0), ["a red circle"])
    assert soft.saliency.shape[1] == 1 and 0 < float(soft.base_score[0, 0]) < 1


@pytest.mark.parametrize("knobs,match", [
    ({"window": 0}, "window must be"), ({"window": -3}, "window must be"), ({"window": 2.5}, "window must be"),
    ({"window": 300}, "window must be"), ({"stride": 0}, "stride must be"),
    ({"window": 16, "stride": 17}, r"stride \(17\) must be at most window \(16\)"),
    ({"fill": "red"}, "fill must be one of 'blur', 'gray'"), ({"blur_sigma": 0}, "blur_sigma must be"),
    ({"score": "probability"}, "score must be one of"), ({"batch_size": 0}, "batch_size must be"),
])
def test_bad_knobs_are_refused_by_name(tiny_rn, knobs, match):
    with pytest.raises(ValueError, match=match):
        dv.Occlusion(tiny_rn, **knobs)


def test_a_layer_is_refused_it_taps_none(tiny_rn):
    with pytest.raises(ValueError, match="Occlusion has no knob 'layer'"):
        dv.make_method("occlusion", tiny_rn, layer="visual.layer4")
    with pytest.raises(TypeError):
        dv.Occlusion(tiny_rn, layer="visual.layer4")
    with pytest.raises(TypeError, match="CLIPModel"):
        dv.Occlusion("not a model")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.cuda
def test_cpu_and_cuda_agree(tiny_dirs):
    cpu = dv.load_model(checkpoint=tiny_dirs["rn"], device="cpu")
    gpu = dv.load_model(checkpoint=tiny_dirs["rn"], device="cuda")
    images, prompts = [make_image(0), make_image(1)], [PROMPT, "a red circle"]
    a = dv.Occlusion(cpu, **BIG)(images, prompts)
    b = dv.Occlusion(gpu, **BIG)(images, prompts)
    assert b.saliency.device.type == "cpu" and b.params["device"].startswith("cuda")
    assert torch.allclose(a.saliency_lowres, b.saliency_lowres, atol=1e-4)
