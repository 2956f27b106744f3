"""Files from others are data, never a key to the user's disk or memory: a bank's image paths stay inside its
root, a hand-edited manifest is caught against the shards' own rows, sizes read from files are bounded before
anything is allocated, pipes and devices are refused before they are opened; an extraction in which every image
failed says so and exits non-zero, a file name that is not UTF-8 fails one row at most, and a bank records its
root as an absolute path."""
import json
import os
import threading
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import decomviz as dv
from decomviz.analysis.bank_images import BankImages
from decomviz.analysis.shards import BankError
from decomviz.images import ImageInputError, to_rgb

from .conftest import make_image

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


class _StubBank:
    """What BankImages reads of a bank: its record and its rows' image ids."""

    def __init__(self, dataset, ids, image_size=(64, 64)):
        self.dataset, self.protocol, self.part_vocabulary = dataset, {"image_size": list(image_size)}, []
        self._ids = ids

    def to_pandas(self, columns):
        return pd.DataFrame({"image_index": range(len(self._ids)), "image_id": self._ids,
                             "labels": [""] * len(self._ids)})


def _png(path, h=40, w=50, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_image(seed, h, w)).save(path)
    return path


# ------------------------------------------------------------------ D: image paths stay inside the root
def test_bank_image_paths_outside_the_root_are_refused(tmp_path):
    root = tmp_path / "photos"
    _png(root / "inside.png")
    secret = _png(tmp_path / "private" / "secret.png")
    (root / "link.png").symlink_to(secret)
    images = BankImages(_StubBank({"kind": "folder", "root": str(root)},
                                  ["inside.png", "../private/secret.png", str(secret), "link.png"]))
    assert images.pixels(0).shape == (64, 64, 3)
    for i in (1, 2, 3):
        with pytest.raises(ValueError, match="outside its folder"):
            images.pixels(i)
    # trusted on purpose: a root that holds them
    assert BankImages(_StubBank({"kind": "folder", "root": str(root)}, ["private/secret.png"]),
                      root=tmp_path).pixels(0).shape == (64, 64, 3)


# ------------------------------------------------------------------ E: manifest against the shards
@pytest.fixture
def bank_folder(tiny_rn, tmp_path):
    out = tmp_path / "bank"
    dv.extract(dv.DecomCAM(tiny_rn, n_components=2, top_channels=16), dv.PartsWorld(4, seed=1, size=128),
               "a photo of a {}", out=out, shard_size=2, progress=False)
    return out


def _edit(folder, change):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_a_shard_listed_twice_is_refused(bank_folder):
    _edit(bank_folder, lambda m: m["shards"].__setitem__("00001", dict(m["shards"]["00000"])))
    with pytest.raises(BankError, match="another shard|twice"):
        dv.OSSMBank(bank_folder)


def test_rows_hidden_by_an_invented_failure_are_caught(bank_folder):
    _edit(bank_folder, lambda m: m["shards"]["00000"]["failed"].append({"id": "partsworld-1-0", "index": 0,
                                                                         "error": "made up"}))
    bank = dv.OSSMBank(bank_folder)
    with pytest.raises(BankError, match="failed image"):
        bank.to_pandas()
    assert any("failed image" in p for p in bank.verify())


def test_a_record_moved_to_other_images_is_caught(bank_folder):
    def shift(m):
        m["shards"]["00000"]["first"] = 2
        m["shards"]["00001"]["first"] = 4
    _edit(bank_folder, shift)
    bank = dv.OSSMBank(bank_folder)
    with pytest.raises(BankError, match="images 0-1, its record images 2-3"):
        bank.take([0])


# ------------------------------------------------------------------ F: sizes bounded before allocating
def test_a_bank_claiming_huge_scenes_is_refused_before_rendering(tmp_path):
    record = {"kind": "partsworld", "n": 2, "seed": 0, "size": 60000, "n_objects": [1, 1]}
    images = BankImages(_StubBank(record, ["partsworld-0-0"]))
    with pytest.raises(ValueError, match="size = 60000, outside 1..4,096"):
        images.pixels(0)
    with pytest.raises(ValueError, match="image_size = 60000"):
        BankImages(_StubBank(dict(record, size=64), ["partsworld-0-0"], image_size=(60000, 60000)))


def _npz(path, entries):
    """An .npz written by hand: name -> raw .npy bytes (or an array)."""
    import io
    from numpy.lib import format as npf
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, value in entries.items():
            if isinstance(value, np.ndarray):
                buf = io.BytesIO()
                npf.write_array(buf, value)
                value = buf.getvalue()
            z.writestr(name + ".npy", value)
    return path


def _meta():
    return np.array(json.dumps({"format": 1, "method": "decomcam", "prompts": ["p"], "params": {}}))


def test_an_npz_declaring_a_huge_array_is_refused(tmp_path):
    import io
    from numpy.lib import format as npf
    buf = io.BytesIO()
    npf.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)})
    path = _npz(tmp_path / "huge.npz", {"__meta__": _meta(), "saliency": buf.getvalue() + b"\0" * 64})
    with pytest.raises(ValueError, match=r"declares a \(100000, 100000\) float32 array"):
        dv.Explanation.load(path)


def test_an_npz_inflating_far_beyond_its_size_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("__meta__.npy", _npz_bytes(_meta()))
        with z.open("saliency.npy", "w", force_zip64=True) as f:
            from numpy.lib import format as npf
            import io
            head = io.BytesIO()
            npf.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": (300 << 20,)})
            f.write(head.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(300):
                f.write(chunk)
    assert path.stat().st_size < 2 << 20
    with pytest.raises(ValueError, match="uncompressed .* it is not inflated"):
        dv.Explanation.load(path)


def _npz_bytes(array):
    import io
    from numpy.lib import format as npf
    buf = io.BytesIO()
    npf.write_array(buf, array)
    return buf.getvalue()


def test_an_npz_with_deeply_nested_json_is_a_clear_error(tmp_path):
    deep = np.array("[" * 100000 + "]" * 100000)
    path = _npz(tmp_path / "deep.npz", {"__meta__": deep, "saliency": np.zeros((1, 1, 4, 4), np.float32)})
    with pytest.raises(ValueError, match="not the JSON record"):
        dv.Explanation.load(path)


def test_a_bank_manifest_far_too_large_is_not_read(tmp_path, monkeypatch):
    from decomviz.analysis import shards
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 3, "shards": {}, "pad": "x" * 5000}))
    monkeypatch.setattr(shards, "MAX_MANIFEST_BYTES", 1000)
    with pytest.raises(BankError, match="more than the 1,000"):
        dv.OSSMBank(tmp_path)


# ------------------------------------------------------------------ G: pipes and devices
def _returns_within(fn, seconds=20):
    result = {}

    def run():
        try:
            result["value"] = fn()
        except Exception as err:  # noqa: BLE001 - the test looks at it
            result["error"] = err
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "blocked on the pipe"
    return result


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_as_an_image_and_as_a_csv_row(tmp_path):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    got = _returns_within(lambda: to_rgb(pipe))
    assert isinstance(got.get("error"), ImageInputError) and "not a regular file" in str(got["error"])
    (tmp_path / "list.csv").write_text("path,label\npipe.png,x\n")
    from decomviz.analysis.datasets import as_items
    got = _returns_within(lambda: as_items(tmp_path / "list.csv")[0])
    assert "not a regular file" in got["value"].error
    got = _returns_within(lambda: dv.Explanation.load(pipe))
    assert "not a regular file" in str(got.get("error"))


# ------------------------------------------------------------------ 11: extreme aspect ratios
@pytest.mark.parametrize("size", [(100000, 1), (1, 100000), (3, 30000)])
def test_extreme_aspect_ratios_are_refused_before_the_blow_up(tiny_rn, tmp_path, size):
    path = tmp_path / "strip.png"
    Image.new("RGB", size, (200, 10, 10)).save(path)
    start = time.perf_counter()
    with pytest.raises(ImageInputError, match="aspect ratio .* crop it"):
        tiny_rn.prepare(str(path))
    assert time.perf_counter() - start < 5


# ------------------------------------------------------------------ H, I, J: the command line and folders
def test_an_extraction_where_every_image_failed_exits_non_zero_and_says_why(tiny_dirs, tmp_path, capsys):
    from decomviz.apps.cli import main
    flat = tmp_path / "flat"
    for i in range(2):
        _png(flat / f"{i}.png", seed=i)
    rc = main(["extract", str(flat), "--checkpoint", str(tiny_dirs["rn"]), "--n-components", "2",
               "--out", str(tmp_path / "bank")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "every image failed (2 of 2)" in err and "needs labels" in err


def test_a_file_name_that_is_not_utf8_fails_one_row_at_most(tiny_rn, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = os.fsdecode(b"caf\xe9.png")
    bad = os.fsdecode(b"bro\xefken.png")
    try:
        _png(folder / good)
        (folder / bad).write_bytes(b"not an image")
    except (UnicodeEncodeError, OSError):
        pytest.skip("this file system does not take names that are not UTF-8")
    _png(folder / "plain.png", seed=3)
    cam = dv.DecomCAM(tiny_rn, n_components=2, top_channels=16)
    for _ in range(2):  # and again: a rerun resumes
        bank = dv.extract(cam, folder, ["a photo"], out=tmp_path / "bank", progress=False)
    assert bank.complete and bank.n_images == 2 and len(bank.failed) == 1
    assert bank.failed[0]["id"] == "bro\ufffdken.png"
    assert set(bank.to_pandas(["image_id"]).image_id) == {"caf\ufffd.png", "plain.png"}


def test_a_folder_bank_records_its_absolute_root_and_works_from_anywhere(tiny_rn, tmp_path, monkeypatch):
    work = tmp_path / "work"
    _png(work / "photos" / "a.png")
    _png(work / "photos" / "b.png", seed=1)
    cam = dv.DecomCAM(tiny_rn, n_components=2, top_channels=16)
    monkeypatch.chdir(work)
    bank = dv.extract(cam, "photos", ["a photo"], out="bank", progress=False)
    assert bank.dataset["root"] == "photos" and bank.dataset["root_absolute"] == str((work / "photos").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    images = BankImages(dv.OSSMBank(work / "bank"))
    assert images.pixels(0).shape[:2] == tuple(tiny_rn.image_size)
    before = (work / "bank" / "shard-00000.parquet").stat().st_mtime_ns
    resumed = dv.extract(cam, work / "photos", ["a photo"], out=work / "bank", progress=False)  # absolute path
    assert resumed.complete and (work / "bank" / "shard-00000.parquet").stat().st_mtime_ns == before
