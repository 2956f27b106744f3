"""A bank reads, replaces and deletes only the files it wrote: a user's files in its folder survive every
engine and every mode (new, resume, overwrite) byte for byte, and a bank object notices when the bank was
rewritten under it."""
import json
import warnings

import numpy as np
import pytest

import decomviz as dv
from decomviz.analysis.shards import BankError

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")

PROMPT = "a photo of a {}"


@pytest.fixture(scope="module")
def world():
    return dv.PartsWorld(4, seed=3, n_objects=(1, 2), size=128)


def _cam(model):
    return dv.DecomCAM(model, n_components=2, top_channels=16)


def _plant(folder):
    """A user's files: readable Parquet (one in the bank's own schema, one a plain table), unreadable Parquet,
    other files, and sub-folders holding Parquet. Returns {relative path: bytes}."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.rglob("*"))
    (folder / "data" / "2024").mkdir(parents=True)
    (folder / "results").mkdir()
    pq.write_table(pa.table({"x": [1, 2, 3]}), folder / "data" / "2024" / "train.parquet")
    pq.write_table(pa.table({"metric": [0.5]}), folder / "results" / "metrics.parquet")
    pq.write_table(pa.table({"x": [1.0]}), folder / "mine.parquet")
    pq.write_table(dv.bank_schema().empty_table(), folder / "looks_like_a_bank.parquet")
    (folder / "half_written.parquet").write_bytes(b"PAR1 not really parquet")
    (folder / "notes.txt").write_text("my notes")
    (folder / "_private.parquet").write_bytes(b"\x00" * 10)
    return {str(p.relative_to(folder)): p.read_bytes() for p in set(folder.rglob("*")) - before if p.is_file()}


def _survived(folder, planted):
    for rel, data in planted.items():
        path = folder / rel
        assert path.is_file(), f"{rel} was deleted"
        assert path.read_bytes() == data, f"{rel} was changed"


def _keys(bank):
    df = bank.to_pandas(["image_id", "prompt", "component", "weight"])
    return df.sort_values(["image_id", "prompt", "component"]).reset_index(drop=True)


def _same_rows(a, b):
    ka, kb = _keys(a), _keys(b)
    assert ka[["image_id", "prompt", "component"]].equals(kb[["image_id", "prompt", "component"]])
    assert np.allclose(ka.weight, kb.weight, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the Ray engine needs decomviz[ray]")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 _node_ip_address="127.0.0.1")
    yield ray
    if started:
        ray.shutdown()


def _options(engine):
    if engine == "ray":
        return dict(engine="ray", num_actors=1, num_cpus=1, batch_size=2, progress=False)
    return dict(shard_size=2, progress=False)


@pytest.mark.parametrize("engine", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_user_files_survive_new_resume_and_overwrite(engine, tiny_rn, world, tmp_path, request):
    if engine == "ray":
        request.getfixturevalue("local_ray")
    cam, kw = _cam(tiny_rn), _options(engine)
    clean = dv.extract(cam, world, PROMPT, out=tmp_path / "clean", **kw)
    out = tmp_path / "project"
    planted = _plant(out)

    # new: a folder holding other files is refused, naming them, and nothing is written
    with pytest.raises(BankError, match="notes.txt") as err:
        dv.extract(cam, world, PROMPT, out=out, **kw)
    assert "allow_other_files=True" in str(err.value)
    _survived(out, planted)
    assert not (out / "manifest.json").exists() and not (out / "ray_files.json").exists()

    # new, said explicitly: the bank is written beside them and reads only its own files
    dv.extract(cam, world, PROMPT, out=out, allow_other_files=True, **kw)
    _survived(out, planted)
    _same_rows(dv.OSSMBank(out), clean)
    assert dv.OSSMBank(out).verify() == []

    # resume with nothing to do, then with one of the bank's own files damaged
    dv.extract(cam, world, PROMPT, out=out, **kw)
    _survived(out, planted)
    own = sorted(set(p.name for p in out.glob("*.parquet")) - set(planted))
    assert own
    (out / own[0]).write_bytes((out / own[0]).read_bytes()[:50])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = dv.extract(cam, world, PROMPT, out=out, **kw)
    _survived(out, planted)
    _same_rows(resumed, clean)

    # overwrite: exactly the bank's own files go
    again = dv.extract(cam, world, PROMPT, out=out, overwrite=True, **kw)
    _survived(out, planted)
    _same_rows(again, clean)


@pytest.mark.parametrize("engine", ["local", "ray"])
@pytest.mark.slow
def test_overwrite_of_a_bank_in_an_empty_folder_keeps_files_added_later(engine, tiny_rn, world, tmp_path, request):
    request.getfixturevalue("local_ray")  # each engine is replaced by the other one at the end
    cam, kw = _cam(tiny_rn), _options(engine)
    out = tmp_path / "bank"
    dv.extract(cam, world, PROMPT, out=out, **kw)
    planted = _plant(out)  # the user puts files beside the bank afterwards
    dv.extract(cam, world, PROMPT, out=out, **kw)  # resume
    _survived(out, planted)
    dv.extract(cam, world, PROMPT, out=out, overwrite=True, **kw)
    _survived(out, planted)
    assert dv.OSSMBank(out).n_images == len(world)
    # the other engine replaces it, exactly its files
    other = _options("local" if engine == "ray" else "ray")
    dv.extract(cam, world, PROMPT, out=out, overwrite=True, **other)
    _survived(out, planted)
    bank = dv.OSSMBank(out)
    assert bank.n_images == len(world) and (bank.manifest is None) == (engine == "local")


def test_a_file_under_a_shard_name_that_the_bank_did_not_write_is_not_replaced(tiny_rn, world, tmp_path):
    out = tmp_path / "bank"
    out.mkdir()
    (out / "shard-00001.parquet").write_bytes(b"someone else's")
    with pytest.raises(BankError, match="did not write"):
        dv.extract(_cam(tiny_rn), world, PROMPT, out=out, shard_size=2, progress=False, allow_other_files=True)
    assert (out / "shard-00001.parquet").read_bytes() == b"someone else's"


def test_the_manifest_lists_the_bank_files(tiny_rn, world, tmp_path):
    bank = dv.extract(_cam(tiny_rn), world, PROMPT, out=tmp_path / "b", shard_size=3, progress=False)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["files"] == ["shard-00000.parquet", "shard-00001.parquet"]
    assert manifest["generation"] == 1 and bank.complete


def test_a_bank_object_notices_a_rewrite_and_says_to_reopen(tiny_rn, world, tmp_path):
    out = tmp_path / "b"
    dv.extract(_cam(tiny_rn), world, PROMPT, out=out, shard_size=2, progress=False)
    old = dv.OSSMBank(out)
    n = len(old)
    dv.extract(dv.DecomCAM(tiny_rn, n_components=3, top_channels=16), world, PROMPT, out=out, shard_size=2,
               progress=False, overwrite=True)
    assert "open it again" in repr(old)
    for read in (lambda: old.to_pandas(), lambda: old.verify(), lambda: old.take([0]), lambda: len(old)):
        with pytest.raises(BankError, match="rewritten since this object opened it.*open it again"):
            read()
    fresh = dv.OSSMBank(out)
    assert len(fresh) == n // 2 * 3 and fresh.verify() == []


def test_a_bank_object_survives_appends_of_a_resumed_extraction(tiny_rn, world, tmp_path):
    out = tmp_path / "b"

    def on_shard(s):
        if s == 0:
            raise KeyboardInterrupt  # stopped after the first shard
    with pytest.raises(KeyboardInterrupt):
        dv.extract(_cam(tiny_rn), world, PROMPT, out=out, shard_size=2, progress=False, on_shard=on_shard)
    partial = dv.OSSMBank(out)
    rows = partial.to_pandas()
    dv.extract(_cam(tiny_rn), world, PROMPT, out=out, shard_size=2, progress=False)  # appends shard 1
    assert partial.to_pandas().equals(rows)  # what it knew is still there


def test_re_extracting_a_damaged_shard_is_a_new_generation(tiny_rn, world, tmp_path):
    out = tmp_path / "b"
    dv.extract(_cam(tiny_rn), world, PROMPT, out=out, shard_size=2, progress=False)
    old = dv.OSSMBank(out)
    (out / "shard-00001.parquet").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="Re-extracting"):
        dv.extract(_cam(tiny_rn), world, PROMPT, out=out, shard_size=2, progress=False)
    with pytest.raises(BankError, match="open it again"):
        old.verify()
    assert dv.OSSMBank(out).verify() == []
