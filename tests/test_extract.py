import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import decomviz as dv
from tests.conftest import make_image

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


@pytest.fixture
def world():
    return dv.PartsWorld(12, seed=5, n_objects=(1, 2), size=128)


def _cam(model):
    return dv.DecomCAM(model, n_components=3, top_channels=64)


def _assert_same_bank(a, b):
    assert len(a) == len(b)
    pa, pb = a.to_pandas(), b.to_pandas()
    # the rows and every non-float column are the same exactly; floats may come from another process, thread
    # count or batch boundary (a killed run's shards, a resumed run's), whose kernels may round the last bits
    # differently, so they agree to a float32 tolerance
    floats = [c for c in pa.columns if pa[c].dtype.kind == "f"]
    assert list(pa.columns) == list(pb.columns) and pa.drop(columns=floats).equals(pb.drop(columns=floats))
    assert np.allclose(pa[floats].to_numpy(float), pb[floats].to_numpy(float), rtol=1e-4, atol=1e-5, equal_nan=True)
    for name in ("ossms", "embeddings", "pooled", "loadings", "part_overlap"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape and np.allclose(x, y, rtol=1e-4, atol=1e-5, equal_nan=True), name
    keys = list(zip(pa.image_id, pa.prompt, pa.component))
    assert len(set(keys)) == len(keys)  # no duplicated rows


def test_bank_rows_agree_with_explanation(tiny_rn, world, tmp_path):
    bank = dv.extract(_cam(tiny_rn), world, "a photo of a {}", out=tmp_path / "bank", shard_size=5, progress=False)
    assert bank.complete and bank.n_images == 12 and len(bank.shards) == 3
    df = bank.to_pandas()
    scene = world[7]
    prompts = [f"a photo of a {o.label}" for o in scene.objects]
    exp = _cam(tiny_rn)(scene.image, prompts)
    rows = df[df.image_index == 7]
    assert len(rows) == len(prompts) * 3
    for t, p in enumerate(prompts):
        sub = rows[rows.prompt == p].sort_values("component")
        assert np.allclose(sub.weight, exp.weights[0, t].numpy(), atol=1e-4)
        assert np.allclose(sub.singular_value, exp.singular_values[0, t].numpy(), rtol=1e-4)
        idx = sub.index.to_numpy()
        assert np.allclose(bank.ossms[idx], exp.ossms_lowres[0, t].numpy(), atol=1e-5)
        assert np.allclose(bank.embeddings[idx], exp.embeddings[0, t].numpy(), atol=1e-4)
    # part overlap: energy shares in [0, 1], summing to at most 1 (parts are disjoint)
    assert bank.part_overlap.shape == (len(bank), len(bank.part_vocabulary))
    assert (bank.part_overlap >= 0).all() and (bank.part_overlap.sum(1) <= 1 + 1e-5).all()
    label = scene.objects[0].label
    own = [i for i, k in enumerate(bank.part_vocabulary) if k.startswith(label + "/")]
    assert bank.part_overlap[rows.index.to_numpy()][:, own].sum() > 0


def test_pairs_sharing_a_prompt_share_engine_calls(tiny_rn, world, monkeypatch):
    """A template filled with each scene's labels gives scenes different prompt lists; pairs are still
    batched by prompt: one engine call per distinct prompt (batch_size large enough), rows in image order."""
    from decomviz.analysis.datasets import as_items
    from decomviz.analysis.extraction import explain_batch
    items = [as_items(world)[i] for i in range(len(world))]
    calls = []
    cam = _cam(tiny_rn)
    original = type(cam).__call__
    monkeypatch.setattr(type(cam), "__call__", lambda self, images, prompts: calls.append((len(images), prompts))
                        or original(self, images, prompts))
    cols = explain_batch(cam, items, "a photo of a {}", batch_size=64)
    distinct = {f"a photo of a {o.label}" for i in range(len(world)) for o in world[i].objects}
    assert len(calls) == len(distinct) and sum(n for n, _ in calls) == sum(len({o.label for o in world[i].objects})
                                                                          for i in range(len(world)))
    keys = list(zip(cols["image_index"], cols["prompt_index"], cols["component"]))
    assert keys == sorted(keys)
    calls.clear()
    explain_batch(cam, items, "a photo of a {}", batch_size=2)
    assert all(n <= 2 for n, _ in calls)


def test_resuming_needs_the_same_scenes(tiny_rn, tmp_path):
    kw = dict(out=tmp_path / "b", shard_size=6, progress=False)
    dv.extract(_cam(tiny_rn), dv.PartsWorld(4, seed=5, size=128), "a photo of a {}", **kw)
    with pytest.raises(ValueError, match="different dataset"):
        dv.extract(_cam(tiny_rn), dv.PartsWorld(4, seed=5, size=128, distractors=False), "a photo of a {}", **kw)


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    import decomviz as dv
    model = dv.load_model(checkpoint=sys.argv[1], device="cpu")
    world = dv.PartsWorld(12, seed=5, n_objects=(1, 2), size=128)
    stop_after = int(sys.argv[3])
    def on_shard(s):
        if s + 1 == stop_after:
            os._exit(17)  # killed between shards: no cleanup, no finally
    dv.extract(dv.DecomCAM(model, n_components=3, top_channels=64), world, "a photo of a {}", out=sys.argv[2],
               shard_size=3, progress=False, on_shard=on_shard)
""")


def test_killed_and_resumed_equals_one_go(tiny_rn, tiny_dirs, world, tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "halves"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, str(script), str(tiny_dirs["rn"]), str(out), "2"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 17, run.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["shards"]) == 2 and not manifest["complete"]
    assert not list(out.glob("*.tmp"))
    resumed = dv.extract(_cam(tiny_rn), world, "a photo of a {}", out=out, shard_size=3, progress=False)
    whole = dv.extract(_cam(tiny_rn), world, "a photo of a {}", out=tmp_path / "whole", shard_size=3, progress=False)
    _assert_same_bank(resumed, whole)


def test_rerun_with_other_settings_is_refused(tiny_rn, world, tmp_path):
    dv.extract(_cam(tiny_rn), world, "a photo of a {}", out=tmp_path / "b", shard_size=6, progress=False)
    with pytest.raises(ValueError, match="different"):
        dv.extract(dv.DecomCAM(tiny_rn, n_components=2), world, "a photo of a {}", out=tmp_path / "b",
                   shard_size=6, progress=False)


def test_folder_with_corrupt_image_is_skipped_and_reported(tiny_rn, tmp_path):
    root = tmp_path / "photos"
    for cls, seeds in (("cat", [0, 1]), ("dog", [2])):
        (root / cls).mkdir(parents=True)
        for s in seeds:
            Image.fromarray(make_image(s)).save(root / cls / f"{s}.png")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    bank = dv.extract(_cam(tiny_rn), root, ["a photo of a {}", "something"], out=tmp_path / "bank", progress=False)
    assert [f["id"] for f in bank.failed] == [os.path.join("dog", "broken.png")]
    assert "not an image" in bank.failed[0]["error"] or "corrupt" in bank.failed[0]["error"]
    df = bank.to_pandas()
    assert bank.n_images == 3 and len(df) == 3 * 2 * 3
    assert set(df[df.labels == "cat"].prompt) == {"a photo of a cat", "something"}


def test_csv_dataset(tiny_rn, tmp_path):
    for s in range(2):
        Image.fromarray(make_image(s)).save(tmp_path / f"{s}.png")
    (tmp_path / "data.csv").write_text("path,prompt\n0.png,a red blob|a blue blob\n1.png,a green blob\n")
    bank = dv.extract(_cam(tiny_rn), tmp_path / "data.csv", out=tmp_path / "bank", progress=False)
    df = bank.to_pandas()
    assert sorted(set(df.prompt)) == ["a blue blob", "a green blob", "a red blob"] and len(df) == 3 * 3


def test_unwritable_output_fails_clearly(tiny_rn, world, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="Cannot write the bank"):
        dv.extract(_cam(tiny_rn), world, "a photo of a {}", out=blocker / "bank", progress=False)


def test_full_disk_keeps_completed_shards(tiny_rn, world, tmp_path, monkeypatch):
    import errno
    from decomviz.analysis import extraction as ex
    real = ex._write_table
    calls = {"n": 0}

    def failing(table, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, path)

    monkeypatch.setattr(ex, "_write_table", failing)
    out = tmp_path / "bank"
    with pytest.raises(OSError, match="disk is full.*intact"):
        dv.extract(_cam(tiny_rn), world, "a photo of a {}", out=out, shard_size=6, progress=False)
    assert [p.name for p in out.glob("shard-*")] == ["shard-00000.parquet"]
    monkeypatch.setattr(ex, "_write_table", real)
    bank = dv.extract(_cam(tiny_rn), world, "a photo of a {}", out=out, shard_size=6, progress=False)
    assert bank.complete and bank.n_images == 12


def test_bad_arguments(tiny_rn, world, tmp_path):
    with pytest.raises(TypeError, match="DecomCAM"):
        dv.extract(dv.GradCAM(tiny_rn), world, "x", out=tmp_path / "a")
    with pytest.raises(ValueError, match="shard_size"):
        dv.extract(_cam(tiny_rn), world, "x", out=tmp_path / "a", shard_size=0)
    with pytest.raises(TypeError, match="Cannot extract"):
        dv.extract(_cam(tiny_rn), [1, 2], "x", out=tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="not an OSSM bank"):
        dv.OSSMBank(tmp_path)


def test_bank_images_rerender_scenes_made_with_any_options(tiny_rn, tmp_path):
    from decomviz.analysis.bank_images import BankImages
    world = dv.PartsWorld(3, seed=2, size=128, n_objects=(1, 2), distractors=False, rotation=0.0, flip=False,
                          scale=(0.2, 0.3))
    bank = dv.extract(_cam(tiny_rn), world, "a photo of a {}", out=tmp_path / "b", progress=False)
    shown = BankImages(bank).world
    for i in range(len(world)):
        assert np.array_equal(np.asarray(shown[i].image), np.asarray(world[i].image))


def test_progress_turns_pair_counts_into_images():
    from decomviz.analysis.extraction import _ImageProgress

    class Bar:
        n, postfix = 0, None

        def update(self, k):
            self.n += k

        def set_postfix(self, **kw):
            self.postfix = kw

    bar = Bar()
    progress = _ImageProgress(bar)
    progress.add(2)                        # two images that failed to load count as done
    advance = progress.pairs_of(10)
    advance(3, 6)
    assert bar.n == 2 + 5
    advance(6, 6)
    assert bar.n == 2 + 10 and progress.done == 12 and "img_per_s" in bar.postfix


def test_engine_warnings_are_held_while_the_bar_runs_and_given_once_grouped(tiny_rn, world, tmp_path, monkeypatch):
    import warnings
    from decomviz.analysis.extractor import Extractor
    original = Extractor.explain_items

    def noisy(self, *a, **k):
        warnings.warn("engine note", UserWarning)
        return original(self, *a, **k)

    monkeypatch.setattr(Extractor, "explain_items", noisy)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        dv.extract(_cam(tiny_rn), world, "a photo of a {}", out=tmp_path / "bank", shard_size=5, progress=False)
    notes = [str(w.message) for w in seen if "engine note" in str(w.message)]
    shards = -(-len(world) // 5)
    assert notes == [f"engine note [{shards} times during this extraction]"]
