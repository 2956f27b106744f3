"""Issue 16 (reliability, second round): nothing silently wrong, threads and bombs survived, clear errors.
Bank integrity (items 1, 4, bank errors of 10) is in test_bank_integrity.py."""
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import decomviz as dv
from decomviz.apps.cli import main
from decomviz.images import to_rgb
from decomviz.models import Normalized
from tests.conftest import make_image
from tests.test_bank_integrity import bomb_png

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


def _cam(model, **kw):
    return dv.DecomCAM(model, n_components=2, top_channels=16, **kw)


# ---------------------------------------------------------------------------------------------- 2: EXIF
@pytest.fixture
def upright():
    return make_image(3, 90, 150)  # landscape, asymmetric


def _sideways_photo(path, upright, orientation=6):
    """What a phone writes: the pixels as the sensor saw them, and an EXIF tag saying how to turn them."""
    turned = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
    im = Image.fromarray(upright).transpose(turned[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif)
    return path


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_honoured_in_every_reader(tiny_rn, tmp_path, upright, orientation):
    from decomviz.analysis.datasets import ImageFolderItems
    from decomviz.widgets._common import decode_upload
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    path = _sideways_photo(tmp_path / "photos" / "cat" / "phone.png", upright, orientation)
    assert np.asarray(Image.open(path)).shape[:2] != upright.shape[:2] or orientation == 3
    assert np.array_equal(np.asarray(to_rgb(path)), upright)  # explain, Explorer paths
    assert np.array_equal(np.asarray(to_rgb(Image.open(path))), upright)  # a PIL image opened by the user
    assert np.array_equal(np.asarray(decode_upload({"name": "p.png", "content": path.read_bytes()})[1]), upright)
    assert np.array_equal(np.asarray(ImageFolderItems(tmp_path / "photos")[0].image), upright)  # extraction
    cam = _cam(tiny_rn)
    assert torch.equal(cam(str(path), "a photo").saliency, cam(upright, "a photo").saliency)


def test_explain_cli_reads_exif_orientation(tiny_dirs, tmp_path, upright):
    path = _sideways_photo(tmp_path / "phone.png", upright)
    assert main(["explain", str(path), "--prompt", "x", "--checkpoint", str(tiny_dirs["rn"]), "--method",
                 "gradcam", "--out", str(tmp_path / "e.npz")]) == 0
    model = dv.load_model(checkpoint=tiny_dirs["rn"], device="cpu")
    assert torch.equal(dv.Explanation.load(tmp_path / "e.npz").images, dv.GradCAM(model)(upright, "x").images)


# ---------------------------------------------------------------------------------------------- 3 and 10: folders
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


# ---------------------------------------------------------------------------------------------- 5: input scales
def test_float_tensors_in_0_1_are_refused_as_ambiguous(tiny_rn):
    cam = dv.GradCAM(tiny_rn)
    pixels = torch.from_numpy(make_image(0, 128, 128)).permute(2, 0, 1)[None].float() / 255
    with pytest.raises(dv.ImageInputError, match=r"ambiguous.*model\.normalize\(tensor\).*Normalized\(tensor\)"):
        cam(pixels, "x")
    expected = cam(make_image(0, 128, 128), "x")
    assert torch.allclose(cam(tiny_rn.normalize(pixels), "x").saliency, expected.saliency, atol=1e-5)
    normalised = tiny_rn.prepare(make_image(0, 128, 128)).tensor
    assert torch.allclose(cam(normalised, "x").saliency, expected.saliency, atol=1e-5)  # plainly normalised
    bright = torch.full((1, 3, 128, 128), 0.5)  # a normalised batch that happens to lie in [0, 1]
    assert cam(Normalized(bright), "x").saliency.shape == (1, 1, 128, 128)
    with pytest.raises(dv.ImageInputError, match="0-255"):
        cam(pixels * 255, "x")
    with pytest.raises(dv.ImageInputError, match="pixel values in"):
        tiny_rn.normalize(pixels * 255)


def test_pixel_scales_follow_the_dtype_never_the_values(tmp_path):
    dark16 = np.full((8, 8, 3), 200, np.uint16)  # a dark 16-bit image, not an 8-bit one
    assert np.asarray(to_rgb(dark16)).max() == 1
    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(tmp_path / "dark16.png")
    assert np.asarray(to_rgb(tmp_path / "dark16.png")).max() == 1
    assert np.asarray(to_rgb(np.full((8, 8, 3), 200, np.int64))).max() == 200  # ints 0-255 are 8-bit
    with pytest.raises(dv.ImageInputError, match=r"astype\(np\.uint16\)"):
        to_rgb(np.full((8, 8, 3), 40000, np.int64))
    assert np.asarray(to_rgb(np.full((8, 8, 3), 0.8))).max() == 204  # floats are [0, 1]
    with pytest.raises(dv.ImageInputError, match=r"\[0, 1\].*astype\(np\.uint8\)"):
        to_rgb(np.full((8, 8, 3), 200.0))
    with pytest.raises(dv.ImageInputError, match=r"\[0, 1\]"):
        to_rgb(np.full((8, 8, 3), -0.5))


def test_explanation_roundtrip_for_every_method(tiny_rn, tmp_path):
    for name in dv.METHODS:
        if not dv.methods.registry.applies(name, tiny_rn):  # attention methods: tests/test_transformer_methods.py
            continue
        exp = dv.make_method(name, tiny_rn)([make_image(0), make_image(1)], ["a", "b"])
        exp.save(tmp_path / f"{name}.npz")
        back = dv.Explanation.load(tmp_path / f"{name}.npz")
        assert torch.equal(back.saliency, exp.saliency) and back.prompts == ["a", "b"], name


def _text_file(path):
    path.write_text("just some text")
    return path


def _crafted(tmp_path, **arrays):
    meta = {"format": 1, "method": "decomcam", "prompts": ["a", "b"], "params": {}}
    arrays.setdefault("__meta__", np.array(json.dumps(meta)))
    np.savez(tmp_path / "x.npz", **arrays)
    return tmp_path / "x.npz"


@pytest.mark.parametrize("make,match", [
    (lambda p: _text_file(p / "x.npz"), r"not an \.npz \(zip\) archive"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 3, 8, 8), np.float32)), r"saliency has shape \(1, 3, 8, 8\): its T"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8), np.float32)), "expected"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), images=np.zeros((2, 8, 8, 3), np.uint8)),
     r"images has shape .*its B is 2"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), images=np.zeros((1, 8, 8, 3))),
     "images has dtype float64"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), ossms=np.zeros((1, 2, 3, 8, 8), np.float32),
                        weights=np.zeros((1, 2, 4), np.float32)), "weights has shape .*its K is 4"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), flag__empty_map=np.zeros((1, 3), bool)),
     "flag__empty_map"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), bogus=np.zeros(3)), "not a field"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), __meta__=np.array("{no json")), "JSON record"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32),
                        __meta__=np.array(json.dumps({"format": 1, "method": 3, "prompts": [], "params": {}}))),
     "lacks a method name"),
    (lambda p: _crafted(p, images=np.zeros((1, 8, 8, 3), np.uint8)), "no 'saliency' entry"),
    (lambda p: _crafted(p, saliency=np.array([{"a": 1}], dtype=object)), "holds Python objects"),
])
def test_crafted_explanation_files_give_clear_value_errors(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        dv.Explanation.load(path)
    assert "allow_pickle" not in str(info.value)


def test_demo_refuses_models_that_do_not_know_partsworld(capsys):
    assert main(["demo", "--model", "RN50", "--out", "x.html"]) == 2
    assert "only the bundled models know" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- 6: bombs
def test_bomb_image_in_explain_is_a_clean_error(tmp_path, capsys):
    bomb = bomb_png(tmp_path / "bomb.png")
    assert main(["explain", str(bomb), "--prompt", "x", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "decompression bomb" in err and "Traceback" not in err


def test_bomb_image_in_the_explorer_gives_a_message(tiny_rn, tmp_path):
    from decomviz.widgets import Explorer
    bomb = bomb_png(tmp_path / "bomb.png")
    ex = Explorer(tiny_rn, n_scenes=1)
    assert ex.set_image(str(bomb)) is False and "decompression bomb" in ex.status.value
    assert ex.set_upload(({"name": "bomb.png", "content": bomb.read_bytes()},)) is False
    assert "decompression bomb" in ex.status.value
    assert ex.set_image(make_image(0)) is True  # still usable


# ---------------------------------------------------------------------------------------------- 7, 8: threads
def test_twelve_threads_sharing_a_model_get_the_serial_results(tiny_rn):
    cams = [_cam(tiny_rn), _cam(tiny_rn, sign="both"), dv.GradCAM(tiny_rn)]  # two DecomCAMs beside a GradCAM
    images = [make_image(i, 64, 64) for i in range(3)]
    prompts = [["a dog"], ["a cat", "a red circle"]]
    jobs = [(c, i, p) for c in range(3) for i in range(3) for p in range(2)]
    serial = {j: cams[j[0]](images[j[1]], prompts[j[2]]).saliency for j in jobs}
    errors, wrong = [], []

    def worker(seed):
        for k in range(20):
            job = jobs[(seed * 7 + k) % len(jobs)]
            try:
                got = cams[job[0]](images[job[1]], prompts[job[2]]).saliency
            except Exception as err:  # noqa: collected, reported below
                errors.append(repr(err))
                continue
            # a worker thread may run torch's kernels with another intra-op thread count than the main thread,
            # which can round the last bits differently; calls leaking into each other differ by far more
            if got.shape != serial[job].shape or not torch.allclose(got, serial[job], atol=1e-5):
                wrong.append(job)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []
    from decomviz.models.taps import hook_count
    assert hook_count(tiny_rn.model) == 0


EXIT_SCRIPT = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    import decomviz as dv
    from decomviz.widgets import Explorer
    ex = Explorer(dv.load_model(checkpoint=sys.argv[1], device="cpu"), n_scenes=1)
    ex.set_image(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    ex.set_prompts(["a dog", "a cat", "a red circle"])
    ex.set_compare(["gradcam", "layercam", "scorecam"])
    ex.run(wait=False)
    print("leaving while", "running" if ex.running else "done", flush=True)
""")


def test_interpreter_exit_during_an_explorer_run_is_clean(tiny_dirs, tmp_path):
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    run = subprocess.run([sys.executable, str(script), str(tiny_dirs["rn"])], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "leaving while running" in run.stdout and "terminate called" not in run.stderr


# ---------------------------------------------------------------------------------------------- 9: command line
@pytest.fixture
def image_path(tmp_path):
    Image.fromarray(make_image(0)).save(tmp_path / "scene.png")
    return tmp_path / "scene.png"


def test_explain_takes_braces_literally_and_extract_refuses_bad_templates(image_path, tmp_path, tiny_dirs, capsys):
    out = tmp_path / "e.npz"
    assert main(["explain", str(image_path), "--prompt", "a {} with {color}", "--checkpoint", str(tiny_dirs["rn"]),
                 "--method", "gradcam", "--out", str(out)]) == 0
    assert dv.Explanation.load(out).prompts == ["a {} with {color}"]
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    shutil.copy(image_path, tmp_path / "photos" / "cat" / "a.png")  # a label, so the template is filled
    rc = main(["extract", str(tmp_path / "photos"), "--prompt", "a {} with {color}", "--checkpoint",
               str(tiny_dirs["rn"]), "--out", str(tmp_path / "bank")])
    err = capsys.readouterr().err
    assert rc == 2 and "{color}" in err and "Traceback" not in err and "KeyError" not in err


def test_non_utf8_file_name_works(image_path, tmp_path, tiny_dirs):
    odd = tmp_path / os.fsdecode(b"sc\xffene.png")
    shutil.copy(image_path, odd)
    out = tmp_path / "report.html"
    assert main(["explain", str(odd), "--prompt", "x", "--checkpoint", str(tiny_dirs["rn"]), "--compare", "",
                 "--n-components", "2", "--out", str(out)]) == 0
    assert "sc\ufffdene.png" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("args,match", [
    (["--device", "tpu"], "Unknown device 'tpu'"),
    (["--out", "/nonexistent-folder/r.html"], "does not exist"),
])
def test_cli_errors_come_before_the_work_without_traceback(image_path, tiny_dirs, capsys, args, match):
    argv = ["explain", str(image_path), "--prompt", "x", "--checkpoint", str(tiny_dirs["rn"]),
            "--out", str(image_path.parent / "r.html"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and "[decomviz] decomcam" not in err


# ---------------------------------------------------------------------------------------------- 10: unclear errors
def test_nan_and_wrong_sized_tensors(tiny_rn):
    cam = _cam(tiny_rn)
    x = tiny_rn.prepare(make_image(0)).tensor
    bad = x.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(dv.ImageInputError, match="1 NaN or infinite"):
        cam(bad, "x")
    with pytest.raises(dv.ImageInputError, match=r"64x64, but .* takes 128x128"):
        cam(x[..., :64, :64], "x")


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


def test_knob_edge_values():
    knob = dv.DecomCAM.knobs()["blur_sigma"]
    with pytest.raises(ValueError, match="blur_sigma must be a finite number"):
        knob.validate(float("inf"))
    assert knob.validate(np.float32(5)) == 5.0 and knob.validate(np.int64(3)) == 3.0


# ---------------------------------------------------------------------------------------------- 11: many prompts
def test_prompts_go_through_the_engine_in_bounded_chunks(tiny_rn, monkeypatch):
    from decomviz.methods import chunking
    prompts = [f"prompt {i}" for i in range(1000)]
    cam = dv.GradCAM(tiny_rn)
    seen = []
    original = type(cam)._explain
    monkeypatch.setattr(type(cam), "_explain", lambda self, x, text, p: seen.append(len(p)) or original(self, x, text, p))
    exp = cam(make_image(0), prompts)
    assert exp.saliency.shape == (1, 1000, 128, 128) and exp.prompts == prompts
    assert max(seen) <= chunking.PROMPTS_PER_PASS and sum(seen) == 1000


@pytest.mark.parametrize("kw", [dict(), dict(score="logit", sign="both"), dict(score="softmax")])
def test_chunked_calls_equal_one_pass(tiny_rn, monkeypatch, kw):
    from decomviz.methods import base, chunking
    prompts = [f"a photo of thing {i}" for i in range(21)]
    cam = _cam(tiny_rn, **kw)
    images = [make_image(0), make_image(1)]
    monkeypatch.setattr(chunking, "PROMPTS_PER_PASS", 8)
    monkeypatch.setattr(base, "PROMPTS_PER_PASS", 8)
    chunked = cam(images, prompts)
    monkeypatch.setattr(base, "PROMPTS_PER_PASS", 1000)
    whole = cam(images, prompts)
    assert chunked.prompts == whole.prompts and set(chunked.flags) == set(whole.flags)
    scores = float(whole.masked_scores.abs().max())  # float rounding is relative to the scores' size
    fields = {"base_score": scores, "reference_score": scores, "alpha": None, "singular_values": None}
    if kw.get("sign") != "both":  # (with "both", a near tie between orientations may be decided either way)
        fields.update(contributions=scores, masked_scores=scores)
    for name, scale in fields.items():
        a, b = getattr(chunked, name), getattr(whole, name)
        assert float((a - b).abs().max()) <= 1e-4 * (scale or float(b.abs().max())), name
    assert torch.equal(chunked.images, whole.images) and chunked.saliency.shape == whole.saliency.shape
