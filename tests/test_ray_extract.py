"""`dv.extract(..., engine="ray")` on a local Ray (loopback only) gives the rows of the local
engine, and a rerun skips the image ids already written. Runs in the normal suite when Ray is installed."""
import os
import warnings

import numpy as np
import pytest

import decomviz as dv

ray = pytest.importorskip("ray", reason="the Ray engine needs decomviz[ray]")

pytestmark = [pytest.mark.filterwarnings("ignore:No component raised"), pytest.mark.slow]

KEYS = ["image_id", "prompt", "component"]
VALUES = ["weight", "singular_value", "contribution", "masked_score", "base_score"]


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        # 3 logical CPUs: an actor given 2 (one per torch thread) leaves one for Ray Data's read and write tasks
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 _node_ip_address="127.0.0.1")
    yield ray
    if started:
        ray.shutdown()


def _rows(bank):
    """The bank's rows by key, with their vectors, in key order."""
    df = bank.to_pandas(KEYS + VALUES)
    df["row"] = df.index
    df = df.sort_values(KEYS).reset_index(drop=True)
    rows = df["row"].to_numpy()
    return df.drop(columns="row"), {n: bank.vectors(n, rows) for n in ("ossm", "embedding", "loading", "part_overlap")}


def _assert_same_rows(a, b):
    (da, va), (db, vb) = _rows(a), _rows(b)
    assert da[KEYS].equals(db[KEYS]), "the banks hold other (image, prompt, component) rows"
    assert np.allclose(da[VALUES].to_numpy(), db[VALUES].to_numpy(), atol=1e-4)
    for name in va:
        assert va[name].shape == vb[name].shape and np.allclose(va[name], vb[name], atol=1e-4), name


def _stamp(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}


def test_ray_engine_gives_the_local_rows_and_resumes(tiny_rn, tmp_path, local_ray):
    world = dv.PartsWorld(12, seed=5, n_objects=(1, 2), size=128)
    cam = dv.DecomCAM(tiny_rn, n_components=3, top_channels=64)
    # one image per engine call in both engines: the same computations, so the same floats (a random tiny
    # model's weights are ratios of contributions near 0, which batching noise of 1e-8 moves by 1e-3)
    # and two torch threads in both: the actor is given two CPUs (num_cpus), which Ray turns into its torch
    # threads; fp32 sums taken with another thread count differ at 1e-5, which the weights (ratios of small
    # contributions) enlarge past 1e-4
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        local = dv.extract(cam, world, "a photo of a {}", out=tmp_path / "local", shard_size=5, batch_size=1,
                           progress=False)
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "ray"
    kw = dict(out=out, engine="ray", batch_size=1, num_actors=1, num_cpus=2, progress=False)
    bank = dv.extract(cam, world, "a photo of a {}", **kw)
    assert bank.manifest is None and bank.n_images == 12 and bank.failed == []
    assert bank.protocol["model"] == tiny_rn.name and bank.part_vocabulary == local.part_vocabulary
    assert bank.grid == local.grid
    _assert_same_rows(bank, local)

    # resuming: nothing to do -> no file is touched
    before = _stamp(out)
    assert len(dv.extract(cam, world, "a photo of a {}", **kw)) == len(local) and _stamp(out) == before

    # a file lost and one cut short (a stopped write): only their images are extracted again
    files = sorted(out.glob("*.parquet"))
    assert len(files) >= 2
    everything = set(dv.OSSMBank(out).to_pandas(["image_id"]).image_id)
    files[0].unlink()
    files[1].write_bytes(files[1].read_bytes()[:100])
    kept = {p.name: t for p, t in zip(files[2:], [p.stat().st_mtime_ns for p in files[2:]])}
    with pytest.warns(UserWarning, match="not a readable bank file"):
        resumed = dv.extract(cam, world, "a photo of a {}", **kw)
    assert all(_stamp(out)[name] == t for name, t in kept.items())  # the intact files were not rewritten
    assert set(resumed.to_pandas(["image_id"]).image_id) == everything
    _assert_same_rows(resumed, local)


def test_ray_engine_refuses_other_settings_and_local_banks(tiny_rn, tmp_path, local_ray):
    world = dv.PartsWorld(4, seed=1, size=128)
    cam = dv.DecomCAM(tiny_rn, n_components=2, top_channels=16)
    dv.extract(cam, world, "a photo of a {}", out=tmp_path / "ray", engine="ray", num_actors=1, progress=False)
    with pytest.raises(ValueError, match="different protocol"):
        dv.extract(dv.DecomCAM(tiny_rn, n_components=3, top_channels=16), world, "a photo of a {}",
                   out=tmp_path / "ray", engine="ray", num_actors=1, progress=False)
    with pytest.raises(ValueError, match="engine='ray'"):
        dv.extract(cam, world, "a photo of a {}", out=tmp_path / "ray", progress=False)
    dv.extract(cam, world, "a photo of a {}", out=tmp_path / "local", progress=False)
    with pytest.raises(ValueError, match="local engine"):
        dv.extract(cam, world, "a photo of a {}", out=tmp_path / "local", engine="ray", progress=False)
    with pytest.raises(ValueError, match="options of engine='ray'"):
        dv.extract(cam, world, "a photo of a {}", out=tmp_path / "local", num_cpus=2, progress=False)
    for bad in (0, -1, True, "2"):
        with pytest.raises(ValueError, match="num_cpus must be > 0"):
            dv.extract(cam, world, "a photo of a {}", out=tmp_path / "ray", engine="ray", num_cpus=bad,
                       progress=False)


def test_random_weights_cannot_go_to_ray_actors(tmp_path, local_ray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dv.load_model("RN50", pretrained=None, device="cpu")
    with pytest.raises(ValueError, match="random weights"):
        dv.extract(dv.DecomCAM(model, n_components=2), dv.PartsWorld(2, size=128), "a photo of a {}",
                   out=tmp_path / "b", engine="ray", progress=False)
    assert not list((tmp_path / "b").glob("*.parquet")) and os.path.isdir(tmp_path / "b")


def test_cli_extract_with_the_ray_engine(tiny_dirs, tmp_path, local_ray):
    from decomviz.apps.cli import main
    out = tmp_path / "bank"
    args = ["extract", "partsworld:3:1", "--checkpoint", str(tiny_dirs["rn"]), "--n-components", "2",
            "--engine", "ray", "--num-actors", "1", "--out", str(out)]
    assert main(args) == 0
    bank = dv.OSSMBank(out)
    assert bank.manifest is None and bank.n_images == 3 and bank.protocol["n_components"] == 2
    assert main(args) == 0 and len(dv.OSSMBank(out)) == len(bank)  # a rerun finds every id written
