"""Every tower family: a small random model of it gets an adapter, a default layer, a grid that matches the
tower's patch grid, a non-empty DecomCAM map, and a tail (`forward_from`) that reproduces the full forward."""
import warnings

import pytest
import torch

import decomviz as dv
from decomviz.models.taps import hook_count, tap
from decomviz.models.towers import ADAPTERS, adapter_for
from tests.conftest import make_image
from tests.tower_zoo import OPEN_CLIP_FAMILIES, char_tokenizer, hf_model, open_clip_model

EXPECTED = {  # family -> (adapter kind, default layer, grid of the default layer)
    "openclip-rn": ("resnet", "visual.layer4", (2, 2)),
    "openclip-vit": ("vit", "visual.transformer.resblocks.0", (4, 4)),
    "openclip-vit-gap": ("vit", "visual.transformer.resblocks.0", (4, 4)),
    "openclip-coca-pooler": ("vit", "visual.transformer.resblocks.0", (4, 4)),
    "timm-siglip": ("timm-vit", "visual.trunk.blocks.0", (4, 4)),
    "timm-vit-token": ("timm-vit", "visual.trunk.blocks.0", (4, 4)),
    "timm-vit-reg": ("timm-vit", "visual.trunk.blocks.0", (4, 4)),
    "timm-eva02": ("timm-vit", "visual.trunk.blocks.0", (4, 4)),
    "timm-pe-core": ("timm-vit", "visual.trunk.blocks.0", (4, 4)),
    "timm-convnext": ("timm-stages", "visual.trunk.stages.3", (2, 2)),
    "timm-fastvit": ("timm-stages", "visual.trunk.stages.3", (2, 2)),
    "timm-swin": ("timm-stages", "visual.trunk.layers.1", (8, 8)),
    "timm-vitamin": ("timm-vit", "visual.trunk.blocks.0", (4, 4)),
}


def _load(family):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family.startswith("hf-"):
            return dv.load_model(hf_model(family[3:]), tokenizer=char_tokenizer, device="cpu")
        return dv.load_model(open_clip_model(family), device="cpu")


FAMILIES = list(OPEN_CLIP_FAMILIES) + ["hf-clip", "hf-siglip"]
EXPECTED.update({"hf-clip": ("hf-clip", "vision_model.encoder.layers.0", (4, 4)),
                 "hf-siglip": ("hf-siglip", "vision_model.encoder.layers.0", (4, 4))})


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request):
    return request.param, _load(request.param)


def test_family_adapter_grid_and_map(family_model):
    family, model = family_model
    kind, default, grid = EXPECTED[family]
    assert (model.kind, model.default_layer) == (kind, default)
    img = make_image(3)
    x = model.prepare(img).tensor
    with tap(model, model.default_layer, requires_grad=False) as t, torch.no_grad():
        full = model.tower.encode_image(x)
        A = t.grid()
    assert tuple(A.shape[-2:]) == grid and A.shape[0] == 1
    with torch.no_grad():  # the tail from the tapped output reproduces the full forward
        tail = model.forward_from(model.default_layer, t.raw)
    torch.testing.assert_close(tail.float(), full.float(), rtol=1e-4, atol=1e-5)
    exp = dv.DecomCAM(model, n_components=2)(img, "a red circle")
    assert torch.isfinite(exp.saliency).all()
    assert tuple(exp.params["grid"]) == grid
    assert float(exp.saliency.max()) > 0 or bool(exp.flags["empty_map"].all())
    assert hook_count(model.model) == 0


@pytest.mark.parametrize("family", ["timm-vitamin", "timm-siglip"])
def test_timm_grid_comes_from_the_tokens_not_the_config(family):
    """A trunk built for one size and fed another (open_clip's ViTamin-XL-384: a 384 px trunk, 256 px images)
    is laid out on the grid its tokens have."""
    model = _load(family)
    model.tower.trunk.patch_embed.grid_size = (6, 6)   # what the config says; the tokens are 4 x 4
    exp = dv.DecomCAM(model, n_components=2)(make_image(3), "a red circle")
    assert tuple(exp.params["grid"]) == (4, 4) and torch.isfinite(exp.saliency).all()


def test_feature_integration_blends_in_the_tower_layout(family_model):
    family, model = family_model
    exp = dv.DecomCAM(model, n_components=2, integration="feature")(make_image(2), "a blue square")
    assert torch.isfinite(exp.saliency).all()
    assert hook_count(model.model) == 0


def test_every_layer_is_tappable_and_its_tail_exact(family_model):
    family, model = family_model
    x = model.prepare(make_image(1)).tensor
    for layer in model.layers:
        with tap(model, layer, requires_grad=False) as t, torch.no_grad():
            full = model.tower.encode_image(x)
            A = t.grid()
        assert A.ndim == 4 and A.shape[0] == 1, layer
        with torch.no_grad():
            torch.testing.assert_close(model.forward_from(layer, t.raw).float(), full.float(), rtol=1e-4, atol=1e-5)


def test_layer_as_a_module_and_short_errors():
    model = _load("timm-siglip")
    module = model.model.get_submodule(model.default_layer)
    cam = dv.GradCAM(model, layer=module)
    assert cam.layer == model.default_layer
    with pytest.raises(dv.LayerError) as err:
        dv.GradCAM(model, layer=model.visual.trunk.patch_embed)
    assert "visual.trunk.patch_embed" in str(err.value) and "Conv2d(" not in str(err.value)
    assert len(str(err.value)) < 1000
    with pytest.raises(dv.LayerError) as err:
        dv.GradCAM(model, layer=torch.nn.Linear(3, 3))
    assert "Linear" in str(err.value) and "in_features" not in str(err.value)


def test_unknown_tower_is_named_not_printed():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(30)])

        def encode_image(self, x):
            return x

        def encode_text(self, x):
            return x
    with pytest.raises(dv.ModelLoadError) as err:
        dv.load_model(Odd(), tokenizer=char_tokenizer, device="cpu")
    assert "Odd" in str(err.value) and "in_features" not in str(err.value)


def test_registry_picks_one_adapter_per_family():
    assert len({cls.kind for cls in ADAPTERS}) == len(ADAPTERS)
    assert adapter_for(torch.nn.Linear(2, 2)) is None


def test_coverage_script_lists_and_renders(tmp_path):
    """benchmarks/coverage.py: sizes from the meta device, a reason for what is not built, a markdown table."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "coverage.py"
    spec = importlib.util.spec_from_file_location("coverage_script", path)
    cov = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cov)
    (total, tower), reason = cov.estimate_params("RN50")
    assert reason is None and 90e6 < total < 110e6 and tower < total
    row = {"name": "RN50", "params": total, "kind": "resnet", "layer": "visual.layer4", "grid": "7x7",
           "map": "non-empty", "seconds": 1.0, "note": ""}
    text = cov.render([row, {"name": "big", "params": 2e9, "error": "over the time limit"}],
                      [("hub-model", None, "its tokenizer comes from the hub")], "# t")
    assert "| RN50 | 102 | resnet | `visual.layer4` | 7x7 | non-empty | 1.00 |" in text
    assert "| big | 2000 | over the time limit |" in text and "hub-model" in text
    # --resume keeps what a table explained (and only that)
    kept = cov.explained_rows(text)
    assert [r["name"] for r in kept] == ["RN50"] and kept[0]["layer"] == "visual.layer4"
    assert cov.render(kept, [], "# t") == cov.render([row], [], "# t")
    resumed = cov.render(kept, [], "# t\n\nRun B. It resumed earlier runs; the 1 rows they explained are kept as "
                                    "they were:\n\n- Run A.")
    assert cov.earlier_headers(resumed) == ["Run A.", "Run B."]
    assert cov.listed_rows(text) == [("big", 2e9, "over the time limit"),
                                     ("hub-model", None, "its tokenizer comes from the hub")]
    short = cov.summary(text)  # the README's table: counts by adapter and by reason
    assert "| resnet | 1 | 1 | 0 |" in short and "| **all** | **1** | 1 | 0 |" in short
    assert "| over the time limit per architecture | 1 |" in short and "Hugging Face hub (offline here) | 1 |" in short


def test_coverage_script_tells_a_time_limit_from_a_process_the_system_killed(monkeypatch):
    """A child the survey stops at its time limit, and one killed from outside (the out-of-memory killer's
    SIGKILL), get different reasons; a child's exception is reported with its message."""
    import importlib.util
    import os
    import signal
    import time
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "coverage.py"
    spec = importlib.util.spec_from_file_location("coverage_script_run", path)
    cov = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cov)
    monkeypatch.setattr(cov, "explain_one", lambda name, device: time.sleep(30))
    assert "time limit of 1 s" in cov.run_one("slow", "cpu", 1.0, 1)["error"]
    monkeypatch.setattr(cov, "explain_one", lambda name, device: os.kill(os.getpid(), signal.SIGKILL))
    assert "out of memory" in cov.run_one("huge", "cpu", 20.0, 1)["error"]
    monkeypatch.setattr(cov, "explain_one", lambda name, device: 1 / 0)
    assert cov.run_one("broken", "cpu", 20.0, 1)["error"].startswith("ZeroDivisionError")


def test_every_tower_module_registers_its_adapters():
    """One module per family under models/towers, each with its adapter(s) in the registry."""
    import importlib
    import inspect
    from pathlib import Path

    from decomviz.models.towers import Tower
    folder = Path(__file__).resolve().parents[1] / "decomviz" / "models" / "towers"
    for path in sorted(folder.glob("*.py")):
        if path.stem in ("__init__", "base"):
            continue
        module = importlib.import_module(f"decomviz.models.towers.{path.stem}")
        own = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, Tower) and c is not Tower and c.__module__ == module.__name__]
        assert own and all(c in ADAPTERS for c in own), path.name
