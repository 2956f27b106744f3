"""One writer per bank folder: a second extraction is refused at once with a message naming the first (or
waits for it), a killed writer leaves no stale lock, and two writers started together leave one bank equal to a
clean extraction."""
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import decomviz as dv
from decomviz.analysis.folder import BankLocked, WriterLock

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")

PROMPT = "a photo of a {}"


@pytest.fixture(scope="module")
def world():
    return dv.PartsWorld(4, seed=3, n_objects=(1, 2), size=128)


def _cam(model):
    return dv.DecomCAM(model, n_components=2, top_channels=16)


def _same_bank(a, b):
    pa, pb = a.to_pandas(), b.to_pandas()
    floats = [c for c in pa.columns if pa[c].dtype.kind == "f"]
    assert pa.drop(columns=floats).equals(pb.drop(columns=floats))
    # another process may round the last bits differently: float32 tolerance
    assert np.allclose(pa[floats].to_numpy(float), pb[floats].to_numpy(float), rtol=1e-4, atol=1e-5, equal_nan=True)
    assert a.complete and b.complete and a.verify() == [] and a.failed == b.failed


def test_a_second_writer_is_refused_at_once_naming_the_first(tiny_rn, world, tmp_path):
    out = tmp_path / "bank"
    out.mkdir()
    with WriterLock(out):
        start = time.perf_counter()
        with pytest.raises(BankLocked) as err:
            dv.extract(_cam(tiny_rn), world, PROMPT, out=out, progress=False)
        assert time.perf_counter() - start < 5
    message = str(err.value)
    assert f"process {os.getpid()} on host {socket.gethostname()}" in message
    assert "wait=True" in message and "--wait" in message
    assert not (out / "manifest.json").exists()
    assert dv.extract(_cam(tiny_rn), world, PROMPT, out=out, progress=False).complete  # free again


def test_a_waiting_writer_starts_when_the_first_ends(tiny_rn, world, tmp_path):
    out = tmp_path / "bank"
    out.mkdir()
    lock = WriterLock(out).__enter__()
    released = {}

    def release():
        time.sleep(1.5)
        released["at"] = time.perf_counter()
        lock.__exit__(None, None, None)
    threading.Thread(target=release).start()
    bank = dv.extract(_cam(tiny_rn), world, PROMPT, out=out, progress=False, wait=True)
    assert bank.complete and "at" in released


def test_a_killed_writer_leaves_no_stale_lock(tiny_rn, world, tmp_path):
    out = tmp_path / "bank"
    out.mkdir()
    code = ("import os, sys; from decomviz.analysis.folder import WriterLock\n"
            "WriterLock(sys.argv[1]).__enter__(); os._exit(9)")
    run = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 9, run.stderr[-2000:]
    assert (out / ".decomviz-writer.lock").exists()  # left by the kill; the OS lock went with the process
    assert dv.extract(_cam(tiny_rn), world, PROMPT, out=out, progress=False).complete


@pytest.mark.slow
@pytest.mark.parametrize("wait", [False, True])
def test_two_writers_started_together_leave_one_clean_bank(tiny_rn, tiny_dirs, tmp_path, wait):
    out = tmp_path / "bank"
    args = [sys.executable, "-m", "decomviz.apps.cli", "extract", "partsworld:6:3", "--checkpoint",
            str(tiny_dirs["rn"]), "--n-components", "2", "--top-channels", "16", "--shard-size", "2",
            "--out", str(out)] + (["--wait"] if wait else [])
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    runs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(r.wait(timeout=300), r.stderr.read()) for r in runs]
    codes = sorted(rc for rc, _ in results)
    if wait:
        assert codes == [0, 0], results
    else:
        # usually one is refused; should the first end before the second starts, both succeed
        assert codes in ([0, 0], [0, 2]), results
        for rc, err in results:
            if rc == 2:
                assert "is being written by process" in err and "--wait" in err, err
                assert "free space" not in err and "overwrite" not in err
    world = dv.PartsWorld(6, seed=3, n_objects=(1, 2))
    clean = dv.extract(dv.DecomCAM(tiny_rn, n_components=2, top_channels=16), world, PROMPT,
                       out=tmp_path / "clean", shard_size=2, progress=False)
    _same_bank(dv.OSSMBank(out), clean)


def test_a_finished_extraction_leaves_no_lock_file(tiny_rn, world, tmp_path):
    out = tmp_path / "bank"
    dv.extract(_cam(tiny_rn), world, PROMPT, out=out, progress=False)
    assert not (out / ".decomviz-writer.lock").exists()
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.parquet"]
