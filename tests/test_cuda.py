"""CUDA checks. They run wherever a GPU is present; elsewhere they are skipped, saying why."""
import numpy as np
import pytest
import torch

import decomviz as dv
from tests.conftest import make_image

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]

PROMPTS = ["a red circle", "a blue square"]


def _corr(a, b):
    return float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1])


@pytest.fixture(scope="module", params=["RN50", "ViT-B-16"])
def pair(request):
    torch.manual_seed(0)
    cpu = dv.load_model(request.param, pretrained=None, device="cpu")
    gpu = dv.load_model(request.param, pretrained=None, device="cuda")
    gpu.model.load_state_dict(cpu.model.state_dict())
    return cpu, gpu


def test_cpu_and_cuda_agree(pair):
    cpu, gpu = pair
    images = [make_image(0), make_image(1)]
    a = dv.DecomCAM(cpu, n_components=5)(images, PROMPTS)
    b = dv.DecomCAM(gpu, n_components=5)(images, PROMPTS)
    assert torch.allclose(a.base_score, b.base_score, atol=1e-3)
    assert torch.allclose(a.singular_values, b.singular_values, rtol=1e-2, atol=1e-4)
    g = dv.GradCAM(cpu)(images, PROMPTS), dv.GradCAM(gpu)(images, PROMPTS)
    assert _corr(g[0].saliency, g[1].saliency) > 0.99


@pytest.mark.parametrize("autocast", ["bf16", "fp16"])
def test_autocast_agrees_with_fp32(pair, autocast):
    _, gpu = pair
    images = [make_image(2), make_image(3)]
    full = dv.GradCAM(gpu)(images, PROMPTS)
    half = dv.GradCAM(gpu, autocast=autocast)(images, PROMPTS)
    assert _corr(full.saliency, half.saliency) > 0.99
    d32 = dv.DecomCAM(gpu, n_components=5)(images, PROMPTS)
    d16 = dv.DecomCAM(gpu, n_components=5, autocast=autocast)(images, PROMPTS)
    assert _corr(d32.ossms_lowres, d16.ossms_lowres) > 0.99
    assert d16.u.dtype == torch.float32  # the SVD runs in fp32


def test_gpu_memory_returns_to_start(pair):
    _, gpu = pair
    cam = dv.DecomCAM(gpu, n_components=5)
    cam(make_image(0), PROMPTS)  # warm-up: allocator pools, cuDNN workspaces
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    for i in range(3):
        cam([make_image(i), make_image(i + 1)], PROMPTS)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= start + 1024 * 1024


def test_training_runs_on_the_gpu(tmp_path):
    from decomviz.apps.train import load_local, train
    rec = train("tiny-rn", steps=12, batch_size=8, seed=0, out=tmp_path / "gpu", eval_every=6, progress=False,
                workers=0, final_eval=False, device="cuda")
    assert rec["device"] == torch.cuda.get_device_name() and len(rec["losses"]) == 12
    assert all(np.isfinite(rec["losses"])) and len(rec["evals"]) == 2
    model, preprocess, _ = load_local(tmp_path / "gpu")          # saved from the GPU, loads on the CPU
    assert next(model.parameters()).device.type == "cpu"


def test_approximate_svd_driver_agrees_with_the_default(pair):
    _, gpu = pair
    images = [make_image(4), make_image(5)]
    exact = dv.DecomCAM(gpu, n_components=5)(images, PROMPTS)
    fast = dv.DecomCAM(gpu, n_components=5, svd_driver="gesvda")(images, PROMPTS)
    # singular values to 1e-3 of the largest (the approximate driver's resolution); singular vectors are not
    # compared, since close singular values make them differ between any two drivers
    top = exact.singular_values[..., :1]
    assert ((fast.singular_values - exact.singular_values).abs() <= 1e-3 * top).all()
    assert fast.params["svd_driver"] == "gesvda" and torch.isfinite(fast.saliency).all()


def test_the_nmf_split_runs_on_cuda_and_agrees_with_the_cpu(pair):
    cpu, gpu = pair
    images = [make_image(0), make_image(1)]
    a = dv.DecomCAM(cpu, decomposition="nmf", n_components=4)(images, PROMPTS)
    b = dv.DecomCAM(gpu, decomposition="nmf", n_components=4)(images, PROMPTS)
    # the same deterministic start on two devices; float32 rounding differs, so the factors drift a little
    assert _corr(a.ossms_lowres, b.ossms_lowres) > 0.95
    assert torch.allclose(a.singular_values, b.singular_values, rtol=5e-2, atol=1e-4)


def test_concepts_fit_and_transform_on_cuda(pair):
    _, gpu = pair
    scenes = list(dv.PartsWorld(4, seed=1, n_objects=1))
    basis = dv.ConceptBasis(gpu, n_concepts=3, random_state=0, batch_size=2).fit(scenes)
    maps = basis.transform([s.image for s in scenes[:2]])
    assert maps.shape[:2] == (2, 3) and np.isfinite(maps).all() and (maps >= 0).all()
    out = basis.importance(scenes[0].image, "a photo of a house")
    assert np.isfinite(out["contributions"]).all()
