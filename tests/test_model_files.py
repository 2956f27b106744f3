"""Checkpoint folders and weights that cannot work fail with a ModelLoadError (or a ValueError at run time)
that names the problem and the fix; nothing in them is unpickled or run."""
import json
import os
import pickle
import shutil
import warnings

import pytest
import torch
from PIL import Image

import decomviz as dv
from decomviz.apps.cli import main
from tests.conftest import make_image

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


def _cam(model, **kw):
    return dv.DecomCAM(model, n_components=2, top_channels=16, **kw)


def _variant(tiny_dirs, tmp_path, change):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_dirs["rn"], folder)
    change(folder)
    return folder


def _config(folder, edit):
    cfg = json.loads((folder / "open_clip_config.json").read_text())
    edit(cfg)
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/decomviz-pwned",))


def _nan_weight(folder):
    from safetensors.torch import load_file, save_file
    state = load_file(str(folder / "open_clip_model.safetensors"))
    state["visual.conv1.weight"][0, 0, 0, 0] = float("nan")
    save_file(state, str(folder / "open_clip_model.safetensors"))


WEIGHTS = "open_clip_model.safetensors"


FOLDER_CASES = {
    "no weights": (lambda f: (f / WEIGHTS).unlink(), "no weights file .*random weights"),
    "weights.pt": (lambda f: (f / WEIGHTS).rename(f / "weights.pt"), r"It holds weights\.pt: .*rename it"),
    "two weights": (lambda f: [shutil.copy(f / WEIGHTS, f / "a.bin"), (f / WEIGHTS).rename(f / "b.pth")],
                    "several weight files"),
    "bad safetensors": (lambda f: (f / WEIGHTS).write_bytes(b"garbage" * 50), "SafetensorError"),
    "shape mismatch": (lambda f: _config(f, lambda c: c["model_cfg"].__setitem__("embed_dim", 48)),
                       "(?s)size mismatch .*'model_cfg' must describe"),
    "unpickling": (lambda f: [(f / WEIGHTS).unlink(), (f / "open_clip_pytorch_model.bin").write_bytes(
        pickle.dumps(_Evil()))], "UnpicklingError.*refused"),
    "bad json": (lambda f: (f / "open_clip_config.json").write_text("{oops"), "not valid JSON"),
    "no model_cfg": (lambda f: _config(f, lambda c: c.pop("model_cfg")), "no 'model_cfg'"),
    "bad model_cfg": (lambda f: _config(f, lambda c: c["model_cfg"].__setitem__("bogus", 1)),
                      "Could not load the checkpoint folder .*TypeError"),
    "std=0": (lambda f: _config(f, lambda c: c.__setitem__("preprocess_cfg", {"std": [0, 0, 0]})),
              r"std=\[0, 0, 0\].*every std must be > 0"),
    "NaN weights": (_nan_weight, r"NaN or infinite values .*'visual\.conv1\.weight'"),
}


@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_checkpoint_folder_problems_are_model_load_errors(tiny_dirs, tmp_path, case):
    change, match = FOLDER_CASES[case]
    folder = _variant(tiny_dirs, tmp_path, change)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(dv.ModelLoadError, match=match):
            dv.load_model(checkpoint=folder, device="cpu")
    assert not os.path.exists("/tmp/decomviz-pwned")


def test_explain_refuses_a_folder_without_weights(tiny_dirs, tmp_path, capsys):
    folder = _variant(tiny_dirs, tmp_path, lambda f: (f / WEIGHTS).unlink())
    Image.fromarray(make_image(0)).save(tmp_path / "a.png")
    rc = main(["explain", str(tmp_path / "a.png"), "--prompt", "x", "--checkpoint", str(folder),
               "--out", str(tmp_path / "r.html")])
    assert rc == 2 and "no weights file" in capsys.readouterr().err and not (tmp_path / "r.html").exists()


def test_bundled_model_with_pretrained_or_checkpoint_file(tmp_path):
    with pytest.raises(dv.ModelLoadError, match="bundled model with its own weights") as info:
        dv.load_model("parts-rn", pretrained="openai", device="cpu")
    assert "Did you mean" not in str(info.value)
    (tmp_path / "w.safetensors").write_bytes(b"x")
    with pytest.raises(dv.ModelLoadError, match="without checkpoint="):
        dv.load_model("parts-vit", checkpoint=tmp_path / "w.safetensors", device="cpu")
    with pytest.raises(dv.ModelLoadError, match="Name the architecture"):
        dv.load_model(checkpoint=tmp_path / "w.safetensors", device="cpu")


def test_nan_weights_at_run_time_name_the_weights(tiny_rn):
    broken = tiny_rn.clone()
    with torch.no_grad():
        broken.model.visual.layer2[0].conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite activations at visual\.layer4.*'visual\.layer2"):
        _cam(broken)(make_image(0), "x")
    broken2 = tiny_rn.clone()
    with torch.no_grad():
        broken2.model.visual.attnpool.c_proj.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"image embeddings.*attnpool\.c_proj\.weight") as info:
        dv.GradCAM(broken2)(make_image(0), "x")
    assert "svd" not in str(info.value).lower()
