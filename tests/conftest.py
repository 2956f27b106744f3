import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

import decomviz as dv

# DECOMVIZ_TEST_THREADS=1 (or 2, ...) runs the suite with that many intra-op threads: results computed along
# different paths must agree to their stated tolerance whatever the thread count (run it with 1 and with 2)
if os.environ.get("DECOMVIZ_TEST_THREADS"):
    torch.set_num_threads(int(os.environ["DECOMVIZ_TEST_THREADS"]))

# Tiny open_clip configs: full code path (ModifiedResNet / VisionTransformer), seconds per test.
TINY_RN = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 128, "layers": [1, 1, 1, 1], "width": 16, "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_VIT = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _tiny_folder(root, name, cfg, seed):
    """A local checkpoint folder (open_clip_config.json + random safetensors weights), loaded like a real one."""
    import open_clip
    from safetensors.torch import save_file
    folder = root / name
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {"rn": _tiny_folder(root, "tiny-rn", TINY_RN, 0), "vit": _tiny_folder(root, "tiny-vit", TINY_VIT, 1)}


@pytest.fixture(scope="session")
def tiny_rn(tiny_dirs):
    return dv.load_model(checkpoint=tiny_dirs["rn"], device="cpu")


@pytest.fixture(scope="session")
def tiny_vit(tiny_dirs):
    return dv.load_model(checkpoint=tiny_dirs["vit"], device="cpu")


@pytest.fixture(scope="session")
def rn50():
    torch.manual_seed(0)
    return dv.load_model("RN50", pretrained=None, device="cpu")


@pytest.fixture(scope="session")
def vitb16():
    torch.manual_seed(0)
    return dv.load_model("ViT-B-16", pretrained=None, device="cpu")


@pytest.fixture(params=["tiny_rn", "tiny_vit"])
def tiny(request):
    return request.getfixturevalue(request.param)


def make_image(seed=0, h=150, w=180):
    """A structured RGB image: smooth background and two coloured blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    img += rng.uniform(0, 0.4, 3) + 0.2 * (xx / w)[..., None]
    for _ in range(2):
        cy, cx, r = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.25) * min(h, w)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = rng.uniform(0, 1, 3)
    img += rng.normal(0, 0.03, img.shape)
    return (img.clip(0, 1) * 255).astype(np.uint8)


@pytest.fixture
def images():
    return [make_image(0), make_image(1)]


# ---------------------------------------------------------------------------------------------- test tiers
#: tests/slow_tests.txt: the tests that `make fast` leaves out, chosen by their measured duration (seconds, then
#: the test's id without parameters; the header says how it was measured). They are marked `slow` here, beside
#: the tests marked in their own file.
SLOW_LIST = os.path.join(os.path.dirname(__file__), "slow_tests.txt")


def _slow_ids():
    if not os.path.exists(SLOW_LIST):
        return set()
    with open(SLOW_LIST) as f:
        return {line.split()[1] for line in f if line.strip() and not line.startswith("#")}


def pytest_collection_modifyitems(config, items):
    slow = _slow_ids()
    for item in items:
        if item.nodeid.split("[")[0] in slow:
            item.add_marker(pytest.mark.slow)
