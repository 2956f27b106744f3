"""A bank killed anywhere (between shards, mid-shard, mid-rename) resumes to the bank of one run; a garbled
manifest is refused."""
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

import decomviz as dv
from tests.test_extract import _assert_same_bank

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


KILL = textwrap.dedent("""
    import os, sys
    import decomviz as dv
    from decomviz.analysis import extraction
    checkpoint, out, where, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    calls = {"n": 0}
    def dying(original):
        def wrapper(*a, **k):
            calls["n"] += 1
            if calls["n"] == count:
                os._exit(9)  # a hard kill: no cleanup, no finally blocks
            return original(*a, **k)
        return wrapper
    if where == "replace":  # shard renames and manifest writes
        extraction.os.replace = dying(os.replace)
    else:  # in the middle of a shard, between engine calls
        dv.DecomCAM.__call__ = dying(dv.DecomCAM.__call__)
    model = dv.load_model(checkpoint=checkpoint, device="cpu")
    world = dv.PartsWorld(10, seed=11, n_objects=1, size=128)
    dv.extract(dv.DecomCAM(model, n_components=2, top_channels=32), world, "a photo of a {}", out=out,
               shard_size=3, batch_size=2, progress=False)
""")


@pytest.fixture(scope="module")
def reference_bank(tiny_dirs, tmp_path_factory):
    model = dv.load_model(checkpoint=tiny_dirs["rn"], device="cpu")
    world = dv.PartsWorld(10, seed=11, n_objects=1, size=128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dv.extract(dv.DecomCAM(model, n_components=2, top_channels=32), world, "a photo of a {}",
                          out=tmp_path_factory.mktemp("ref") / "bank", shard_size=3, batch_size=2, progress=False)


KILL_POINTS = [("replace", 1), ("replace", 2), ("replace", 3), ("replace", 4), ("replace", 7),
               ("call", 1), ("call", 2), ("call", 4)]


@pytest.mark.parametrize("where,count", KILL_POINTS)
def test_kill_anywhere_then_resume_gives_the_same_bank(tiny_dirs, tmp_path, reference_bank, where, count):
    script = tmp_path / "kill.py"
    script.write_text(KILL)
    out = tmp_path / "bank"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, str(script), str(tiny_dirs["rn"]), str(out), where, str(count)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 9, run.stderr[-2000:]
    model = dv.load_model(checkpoint=tiny_dirs["rn"], device="cpu")
    resumed = dv.extract(dv.DecomCAM(model, n_components=2, top_channels=32),
                         dv.PartsWorld(10, seed=11, n_objects=1, size=128), "a photo of a {}", out=out,
                         shard_size=3, batch_size=2, progress=False)
    _assert_same_bank(resumed, reference_bank)


def test_bank_manifest_garbage_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        dv.OSSMBank(tmp_path)
