"""Bank integrity: a bank always equals a fresh extraction of its dataset as it is
now; damaged shards are found, named and re-extracted; manifests never lead outside the bank folder."""
import json
import os
import shutil
import struct
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import decomviz as dv
from decomviz.analysis.shards import BankError
from tests.conftest import make_image
from tests.test_extract import _assert_same_bank

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


class Stop(Exception):
    pass


def _cam(model):
    return dv.DecomCAM(model, n_components=2, top_channels=16)


def _write_image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_image(seed, 40, 48)).save(path)


def _folder(root, names):
    for i, name in enumerate(names):
        _write_image(root / name, i)
    return root


def _extract(model, root, out, stop_after=None, **kw):
    def on_shard(s):
        if stop_after is not None and s + 1 >= stop_after:
            raise Stop()
    kw = {"shard_size": 2, "batch_size": 2, "progress": False, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return dv.extract(_cam(model), root, ["a photo of a {}", "a shape"], out=out, on_shard=on_shard, **kw)
        except Stop:
            return None


def _ids(bank):
    return sorted(set(bank.to_pandas().image_id))


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))


# ---------------------------------------------------------------------------------------------- a bank is its dataset now
def test_renamed_image_after_a_stopped_run_is_not_lost(tiny_rn, tmp_path):
    """The issue's case: stop after one shard, rename a.png to z.png, rerun: the bank must hold z.png."""
    root = _folder(tmp_path / "photos", ["cat/a.png", "cat/b.png", "dog/c.png", "dog/d.png", "dog/e.png"])
    out = tmp_path / "bank"
    assert _extract(tiny_rn, root, out, stop_after=1) is None
    (root / "cat" / "a.png").rename(root / "dog" / "z.png")
    with pytest.warns(UserWarning, match=r"shard-00000\.parquet .*images changed"):
        bank = dv.extract(_cam(tiny_rn), root, ["a photo of a {}", "a shape"], out=out, shard_size=2,
                          batch_size=2, progress=False)
    assert bank.complete and bank.verify() == []
    assert _ids(bank) == _files(root) and os.path.join("cat", "a.png") not in _ids(bank)
    _assert_same_bank(bank, _extract(tiny_rn, root, tmp_path / "fresh"))


def test_changed_csv_rows_are_re_extracted(tiny_rn, tmp_path):
    _folder(tmp_path, ["a.png", "b.png", "c.png"])
    table = tmp_path / "data.csv"
    table.write_text("path,prompt\na.png,a cat\nb.png,a dog\nc.png,a cow\n")
    kw = dict(shard_size=2, batch_size=2, progress=False)
    dv.extract(_cam(tiny_rn), table, out=tmp_path / "bank", **kw)
    table.write_text("path,prompt\na.png,a cat\nb.png,a horse\nc.png,a cow\n")  # same files, other prompt
    with pytest.warns(UserWarning, match=r"shard-00000\.parquet"):
        bank = dv.extract(_cam(tiny_rn), table, out=tmp_path / "bank", **kw)
    assert "a horse" in set(bank.to_pandas().prompt) and "a dog" not in set(bank.to_pandas().prompt)
    _assert_same_bank(bank, dv.extract(_cam(tiny_rn), table, out=tmp_path / "fresh", **kw))


NAMES = [f"{c}/{n}.png" for c in ("cat", "dog") for n in "abcdefg"]
ops = st.lists(st.tuples(st.sampled_from(["rename", "add", "remove", "edit"]), st.integers(0, 99),
                         st.integers(0, 99)), min_size=1, max_size=4)


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(initial=st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True), changes=ops,
       stop_after=st.sampled_from([None, 1, 2]))
def test_bank_always_equals_a_fresh_extraction_of_the_current_folder(tiny_rn, tmp_path_factory, initial, changes,
                                                                      stop_after):
    base = tmp_path_factory.mktemp("prop")
    root = _folder(base / "photos", initial)
    out = base / "bank"
    _extract(tiny_rn, root, out, stop_after=stop_after)
    seed = 100
    for op, i, j in changes:
        present = _files(root)
        absent = [n for n in NAMES if n not in present]
        if op == "rename" and absent:
            (root / present[i % len(present)]).rename(_mkparent(root / absent[j % len(absent)]))
        elif op == "add" and absent:
            _write_image(root / absent[j % len(absent)], seed)
        elif op == "remove" and len(present) > 1:
            (root / present[i % len(present)]).unlink()
        elif op == "edit":
            _write_image(root / present[i % len(present)], seed)
        seed += 1
    resumed = _extract(tiny_rn, root, out)
    assert resumed.complete and resumed.verify() == [] and _ids(resumed) == _files(root)
    _assert_same_bank(resumed, _extract(tiny_rn, root, base / "fresh"))
    shutil.rmtree(base)


def _mkparent(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------- damaged shards
@pytest.fixture(scope="module")
def reference(tiny_dirs, tmp_path_factory):
    model = dv.load_model(checkpoint=tiny_dirs["rn"], device="cpu")
    root = _folder(tmp_path_factory.mktemp("ref") / "photos", ["cat/a.png", "cat/b.png", "dog/c.png", "dog/d.png",
                                                               "dog/e.png"])
    return model, root, _extract(model, root, root.parent / "bank")


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "random bytes":  # 2000 random bytes written into the middle, size unchanged
        mid = len(data) // 2 - 1000
        data[mid:mid + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    elif how == "one flipped bit":
        data[len(data) // 2] ^= 1
    elif how == "truncated":
        data = data[: len(data) // 3]
    else:
        data = b""
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["random bytes", "one flipped bit", "truncated", "empty"])
def test_damaged_shard_is_named_on_read_and_re_extracted_by_a_rerun(reference, tmp_path, how):
    model, root, ref = reference
    out = tmp_path / "bank"
    shutil.copytree(ref.path, out)
    _damage(out / "shard-00001.parquet", how)
    bank = dv.OSSMBank(out)
    assert bank.complete  # the manifest's word; verify() and every read check the files
    assert [p.split(":")[0] for p in bank.verify()] == ["shard-00001.parquet"]
    with pytest.raises(BankError, match=r"shard-00001\.parquet.*(damaged|rows).*rerun dv\.extract"):
        bank.pooled
    with pytest.warns(UserWarning, match=r"shard-00001\.parquet .*damaged"):
        repaired = dv.extract(_cam(model), root, ["a photo of a {}", "a shape"], out=out, shard_size=2,
                              batch_size=2, progress=False)
    assert repaired.verify() == []
    _assert_same_bank(repaired, ref)


def test_missing_shard_file_is_named_and_re_extracted(reference, tmp_path):
    model, root, ref = reference
    out = tmp_path / "bank"
    shutil.copytree(ref.path, out)
    (out / "shard-00002.parquet").unlink()
    with pytest.raises(BankError, match=r"shard-00002\.parquet' is missing"):
        dv.OSSMBank(out).embeddings
    _assert_same_bank(_extract(model, root, out), ref)


# ---------------------------------------------------------------------------------------------- clear errors
def _edit_manifest(folder, edit):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("target", ["../outside.parquet", "/etc/passwd", "sub/shard-00000.parquet",
                                    "shard-00000.parquet/../../outside.parquet"])
def test_manifest_paths_are_never_followed_outside_the_bank(reference, tmp_path, target):
    out = tmp_path / "bank"
    shutil.copytree(reference[2].path, out)
    shutil.copy(out / "shard-00000.parquet", tmp_path / "outside.parquet")
    _edit_manifest(out, lambda m: m["shards"]["00000"].__setitem__("file", target))
    with pytest.raises(BankError, match="never followed"):
        dv.OSSMBank(out)


def test_symlinked_shard_pointing_outside_is_not_read(reference, tmp_path):
    out = tmp_path / "bank"
    shutil.copytree(reference[2].path, out)
    shutil.move(out / "shard-00000.parquet", tmp_path / "elsewhere.parquet")
    (out / "shard-00000.parquet").symlink_to(tmp_path / "elsewhere.parquet")
    with pytest.raises(BankError, match="outside the bank folder"):
        dv.OSSMBank(out).table


@pytest.mark.parametrize("edit,match", [
    (lambda m: m["shards"]["00001"].pop("rows"), "'00001' has no valid 'rows'"),
    (lambda m: m["shards"]["00001"].__setitem__("first", "zero"), "'00001' has no valid 'first'"),
    (lambda m: m["shards"].__setitem__("00001", [1, 2]), "'00001' is not an object"),
    (lambda m: m["shards"]["00000"].__setitem__("grid", [3]), r"grid \[3\]"),
    (lambda m: m["shards"]["00000"].__setitem__("sha256", "abc"), "not a SHA-256"),
    (lambda m: m.pop("shards"), "no 'shards' object"),
    (lambda m: m.__setitem__("format", 99), "bank format 99"),
])
def test_bad_manifests_name_the_file_and_the_problem(reference, tmp_path, edit, match):
    out = tmp_path / "bank"
    shutil.copytree(reference[2].path, out)
    _edit_manifest(out, edit)
    with pytest.raises(BankError, match=match) as info:
        dv.OSSMBank(out)
    assert "manifest.json" in str(info.value) or "bank format" in str(info.value)


def test_rows_and_grid_that_disagree_with_the_shards_are_named(reference, tmp_path):
    out = tmp_path / "bank"
    shutil.copytree(reference[2].path, out)
    _edit_manifest(out, lambda m: m["shards"]["00001"].__setitem__("rows", 3))
    with pytest.raises(BankError, match=r"shard-00001\.parquet' has \d+ rows, the manifest says 3"):
        dv.OSSMBank(out).table

    def wrong_grid(m):
        m["shards"]["00001"]["rows"] = reference[2].shards[1]["rows"]
        for rec in m["shards"].values():
            rec["grid"] = [3, 5]
    _edit_manifest(out, wrong_grid)
    with pytest.raises(BankError, match=r"OSSMs of \d+ cells, but its manifest gives the grid \(3, 5\)"):
        dv.OSSMBank(out).ossms


def test_manifest_that_is_not_an_object_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(BankError, match="not a bank manifest"):
        dv.OSSMBank(tmp_path)


def test_a_bank_from_an_older_decomviz_is_read_but_not_resumed(reference, tmp_path):
    model, root, ref = reference
    out = tmp_path / "bank"
    shutil.copytree(ref.path, out)
    _edit_manifest(out, lambda m: [m.__setitem__("format", 1)] + [s.pop("sha256") for s in m["shards"].values()])
    assert len(dv.OSSMBank(out).pooled) == len(ref)
    with pytest.raises(ValueError, match="format 1 .*overwrite=True"):
        dv.extract(_cam(model), root, ["a photo of a {}", "a shape"], out=out, shard_size=2, progress=False)


def test_csv_that_is_not_utf8_names_the_file(tiny_rn, tmp_path):
    table = tmp_path / "données.csv"
    table.write_bytes("path,label\nimg.png,café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"données\.csv' is not UTF-8 text .*save the CSV as UTF-8"):
        dv.extract(_cam(tiny_rn), table, "a photo of a {}", out=tmp_path / "bank", progress=False)


@pytest.mark.parametrize("template", ["a {} with {color}", "a {} of {0}", "a {} {"])
def test_bad_templates_fail_before_any_work(tiny_rn, tmp_path, template):
    _folder(tmp_path / "photos", ["cat/a.png"])
    with pytest.raises(ValueError, match=r"(template|field).*'\{\{'"):
        dv.extract(_cam(tiny_rn), tmp_path / "photos", template, out=tmp_path / "bank", progress=False)
    assert not (tmp_path / "bank").exists()


# ---------------------------------------------------------------------------------------------- bombs
def bomb_png(path, width=40_000, height=40_000):
    """A PNG header claiming width x height pixels (PIL refuses it before decoding: a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_bomb_and_broken_images_become_failed_rows(tiny_rn, tmp_path):
    root = _folder(tmp_path / "photos", ["cat/a.png", "dog/b.png"])
    bomb_png(root / "dog" / "bomb.png")
    (root / "cat" / "cut.png").write_bytes((root / "cat" / "a.png").read_bytes()[:100])
    for _ in range(2):  # and on a rerun
        bank = _extract(tiny_rn, root, tmp_path / "bank")
        failed = {f["id"]: f["error"] for f in bank.failed}
        assert set(failed) == {os.path.join("dog", "bomb.png"), os.path.join("cat", "cut.png")}
        assert "decompression bomb" in failed[os.path.join("dog", "bomb.png")]
        assert "truncated or corrupt" in failed[os.path.join("cat", "cut.png")]
        assert bank.complete and bank.n_images == 2 and bank.verify() == []
