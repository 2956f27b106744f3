"""Memory: resident memory stays flat over many explanations, and no hook is left behind."""
import gc
import warnings

import pytest

import decomviz as dv
from decomviz.models.taps import hook_count
from tests.conftest import make_image

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


def test_resident_memory_flat_over_200_explanations(tiny_rn):
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    cam = dv.DecomCAM(tiny_rn, n_components=4)
    img = [make_image(0), make_image(1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(20):  # warm-up: allocator pools, oneDNN caches
            cam(img, ["a red circle", "a dog"])
        gc.collect()
        start = proc.memory_info().rss
        for i in range(200):
            exp = cam(img, ["a red circle", f"prompt {i % 7}"])
            del exp
        gc.collect()
    growth = proc.memory_info().rss - start
    assert growth < 50 * 2 ** 20, f"resident memory grew by {growth / 2 ** 20:.1f} MB"
    assert hook_count(tiny_rn.model) == 0
