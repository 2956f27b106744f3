"""The training recipe (a tiny run) and the bundled PartsWorld CLIP folders (open_clip local-dir, offline)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from decomviz.data import PartsWorld  # noqa: E402
from decomviz.models import BUNDLED  # noqa: E402
from decomviz.apps.train import RECIPES, load_local, train, training_caption, zero_shot_accuracy  # noqa: E402
from decomviz.apps.train.cli import main  # noqa: E402
from decomviz.models import ASSETS  # noqa: E402


def test_training_captions_mix_levels_and_stay_true():
    world = PartsWorld(200, seed=0, n_objects=(1, 3))
    caps = [training_caption(world[i], seed=0) for i in range(200)]
    assert caps == [training_caption(world[i], seed=0) for i in range(200)]           # deterministic
    assert any(c.startswith("a photo of a ") for c in caps)
    assert any(c.startswith("the ") or " the " in c for c in caps)                    # "the wheels of a car"
    assert any(" with " in c for c in caps)
    # every colour word in a caption is the true colour of that part of some object in the scene
    for i, c in enumerate(caps):
        scene = world[i]
        truth = {(p, col) for o in scene.objects for p, col in o.colors.items()}
        toks = c.replace(",", " ").split()
        for a, b in zip(toks, toks[1:]):
            if a in world.colors:
                assert (b, a) in truth, c


def test_short_training_run_lowers_loss(tmp_path):
    rec = train("tiny-rn", steps=40, batch_size=16, seed=0, out=tmp_path / "tiny", eval_every=0,
                progress=False, workers=0, final_eval=False)
    losses = rec["losses"]
    assert len(losses) == 40 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 0.3
    # the folder is an open_clip local-dir model that loads offline
    cfg = json.loads((tmp_path / "tiny" / "open_clip_config.json").read_text())
    assert set(cfg) == {"model_cfg", "preprocess_cfg"}
    model, preprocess, tok = load_local(tmp_path / "tiny")
    x = preprocess(PartsWorld(1, seed=0, size=64)[0].image)[None]
    assert model.encode_image(x).shape == (1, RECIPES["tiny-rn"]["model_cfg"]["embed_dim"])
    record = json.loads((tmp_path / "tiny" / "training.json").read_text())
    assert record["steps"] == 40 and record["seed"] == 0 and "command" in record


def test_training_is_deterministic(tmp_path):
    kw = dict(steps=6, batch_size=8, seed=3, eval_every=0, progress=False, workers=0, save=False)
    a = train("tiny-rn", **kw)
    b = train("tiny-rn", **kw)
    assert a["losses"] == b["losses"]
    sa, sb = a["model_object"].state_dict(), b["model_object"].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_main_cli_options(tmp_path):
    assert main(["--model", "tiny-rn", "--steps", "3", "--batch-size", "4", "--seed", "1", "--out",
                 str(tmp_path / "m"), "--eval-every", "0", "--workers", "0", "--no-progress"]) == 0
    rec = json.loads((tmp_path / "m" / "training.json").read_text())
    assert rec["command"].startswith("decomviz train --model tiny-rn --steps 3")
    with pytest.raises(SystemExit):
        main(["--model", "nope"])


def test_time_boxed_training_stops_saves_and_anneals(tmp_path):
    # 4 s leaves room for several steps even on a loaded machine, so the last one falls late in the box
    rec = train("tiny-rn", steps=100000, batch_size=8, seed=0, out=tmp_path / "boxed", eval_every=0,
                progress=False, workers=0, final_eval=False, max_seconds=4.0)
    assert rec["stopped_early"] and 2 <= rec["steps"] < 100000
    assert len(rec["lrs"]) == rec["steps"] and rec["lrs"][-1] < 0.5 * RECIPES["tiny-rn"]["lr"]
    model, preprocess, _ = load_local(tmp_path / "boxed")        # what was trained is saved and loads
    assert model.encode_image(preprocess(PartsWorld(1, seed=0, size=64)[0].image)[None]).shape[0] == 1


def test_asking_for_cuda_without_a_gpu_says_so(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: tests/test_cuda.py trains on it")
    with pytest.raises(ValueError, match="device='cpu'"):
        train("tiny-rn", steps=2, batch_size=4, device="cuda", save=False, progress=False, workers=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_loads_offline_and_classifies(name, monkeypatch):
    folder = ASSETS / name
    if not (folder / "open_clip_model.safetensors").exists():
        pytest.fail(f"bundled model {name} is missing: run `decomviz train --model {name}`")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert (folder / "open_clip_model.safetensors").stat().st_size <= 20 * 1024 * 1024
    model, preprocess, tokenizer = open_clip.create_model_and_transforms("local-dir:" + str(folder))[0::2] + (
        open_clip.get_tokenizer("local-dir:" + str(folder)),)
    model.eval()
    assert next(model.parameters()).dtype == torch.float32
    cfg = json.loads((folder / "open_clip_config.json").read_text())
    vis = cfg["model_cfg"]["vision_cfg"]
    with torch.no_grad():
        x = torch.zeros(1, 3, 224, 224)
        if isinstance(vis["layers"], list):  # the ResNet towers (parts-rn, parts-rn-dense)
            assert isinstance(vis["layers"], list) and len(vis["layers"]) == 4
            feats = {}
            h = model.visual.layer4.register_forward_hook(lambda m, i, o: feats.setdefault("a", o))
            model.encode_image(x)
            h.remove()
            assert feats["a"].shape[-2:] == (7, 7)
        else:
            grid = vis["image_size"] // vis["patch_size"]
            assert grid >= 7 and vis["layers"] >= 3
            assert tuple(model.visual.grid_size) == (grid, grid)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    acc = zero_shot_accuracy(model, tokenizer, n=200, seed=424242, preprocess=preprocess)
    assert acc >= 0.95, f"{name}: zero-shot accuracy {acc:.3f} on 200 fresh single-object scenes"
    rec = json.loads((folder / "training.json").read_text())
    assert rec["zero_shot_accuracy"] >= 0.95 and rec["command"].startswith("decomviz train")


def test_part_colour_target_follows_the_drawn_parts():
    from decomviz.apps.train.auxiliary import NOT_DRAWN, SLOTS, PartColourHead, part_colour_target
    from decomviz.data import PALETTE
    colours = list(PALETTE)
    scene = PartsWorld(1, seed=5, n_objects=1)[0]
    y = part_colour_target(scene)
    assert y.shape == (len(SLOTS),) and y.dtype == torch.int64
    label = scene.objects[0].label
    expect = {SLOTS.index((label, p.name)): colours.index(p.color) for p in scene.parts if p.mask.any()}
    assert {k: int(v) for k, v in enumerate(y) if v != NOT_DRAWN} == expect
    # a removed part is not drawn; a recoloured part changes its colour
    first = SLOTS.index((label, scene.parts[0].name))
    assert part_colour_target(scene.without_part(0))[first] == NOT_DRAWN
    part = scene.parts[1]
    other = next(c for c in colours if c != part.color)
    assert part_colour_target(scene.with_part_color(1, other))[SLOTS.index((label, part.name))] == colours.index(other)
    # a head that knows nothing scores log 12: only colour can lower the loss
    head = PartColourHead(8)
    torch.nn.init.zeros_(head.linear.weight), torch.nn.init.zeros_(head.linear.bias)
    assert head.loss(torch.randn(1, 8), y[None]).item() == pytest.approx(np.log(12), abs=1e-5)


def test_auxiliary_target_trains_and_is_not_saved(tmp_path, monkeypatch):
    recipe = dict(RECIPES["tiny-rn"], aux_weight=1.0)
    monkeypatch.setitem(RECIPES, "tiny-aux", recipe)
    rec = train("tiny-aux", steps=30, batch_size=16, seed=0, out=tmp_path / "aux", eval_every=15, eval_n=20,
                progress=False, workers=0, final_eval=False)
    assert len(rec["aux_losses"]) == len(rec["losses"]) == 30 and rec["aux_weight"] == 1.0
    assert np.mean(rec["aux_losses"][-5:]) < np.mean(rec["aux_losses"][:5])
    assert {"recoloured_image_cosine", "colour_prompt_cosine"} <= set(rec["evals"][-1])
    model, _, _ = load_local(tmp_path / "aux")          # a plain open_clip CLIP: the head is not in it
    assert not any("linear" in k for k in model.state_dict())


def test_colour_probe_tells_a_colour_blind_model_from_one_that_sees():
    from decomviz.apps.train.evaluate import colour_probe

    class Toy(torch.nn.Module):
        def __init__(self, blind):
            super().__init__()
            self.blind = blind
            self.w = torch.nn.Parameter(torch.randn(3, 8))

        def encode_image(self, x, normalize=True):
            pooled = x.mean((2, 3))
            if self.blind:
                pooled = pooled.mean(1, keepdim=True).expand(-1, 3)
            return torch.nn.functional.normalize(pooled @ self.w + 0.01, dim=-1)

        def encode_text(self, tokens, normalize=True):
            return torch.nn.functional.normalize(tokens[:, :8].float() + 1, dim=-1)

    tok = open_clip.tokenizer.SimpleTokenizer(context_length=16)
    blind = colour_probe(Toy(True), tok, n=6, size=64)
    sees = colour_probe(Toy(False), tok, n=6, size=64)
    assert sees["recoloured_image_cosine"] < blind["recoloured_image_cosine"]
    assert sees["colour_prompt_cosine"] < 1.0


def test_time_limit_is_shared_by_cost_and_unused_time_passes_on():
    """Under --max-minutes a 224 px step counts as 2.5 steps at 112 px (as measured), and what a stage leaves goes to
    the next: before, the limit was split by step counts and the last 224 px stage of parts-rn ran out of time at
    half its steps."""
    from decomviz.apps.train.loop import stage_budget
    stages = [{"image_size": 112, "steps": 2300}, {"image_size": 224, "steps": 550}]
    first = stage_budget(3000.0, stages)
    assert first == pytest.approx(3000.0 * 2300 / (2300 + 2.5 * 550))
    assert stage_budget(3000.0 - 0.5 * first, stages[1:]) == pytest.approx(3000.0 - 0.5 * first)
    assert stage_budget(-5.0, stages) == 0.0


def test_recipes_are_data_one_file_each(tmp_path):
    from decomviz.apps.train.recipes import FOLDER, load_recipes
    assert set(RECIPES) == {p.stem for p in FOLDER.glob("*.json")}
    for name, recipe in RECIPES.items():
        assert {"model_cfg", "steps", "batch_size", "lr", "why"} <= set(recipe), name
    assert RECIPES["parts-rn-dense"]["model_cfg"] == RECIPES["parts-rn"]["model_cfg"]   # extends parts-rn
    assert RECIPES["parts-rn-dense"]["dense_weight"] == 1.0 and "dense_weight" not in RECIPES["parts-rn"]
    (tmp_path / "a.json").write_text('{"extends": "b", "steps": 1}')
    (tmp_path / "b.json").write_text('{"extends": "a", "steps": 2}')
    with pytest.raises(ValueError, match="extends itself"):
        load_recipes(tmp_path)
