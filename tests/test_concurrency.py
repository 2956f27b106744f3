"""Threads sharing a model get the results they would get alone; leaving the interpreter during a background
run is clean."""
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

import decomviz as dv
from tests.conftest import make_image

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


def _cam(model, **kw):
    return dv.DecomCAM(model, n_components=2, top_channels=16, **kw)


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
            except Exception as err:  # collected, reported below
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
