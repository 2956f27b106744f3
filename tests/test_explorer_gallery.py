"""The Explorer's gallery lists scikit-learn's sample photos without importing scikit-learn (about 140 MB that a
notebook like 01 otherwise never needs), and reads the same pixels as scikit-learn does."""
import subprocess
import sys

import numpy as np
import pytest


def test_the_gallery_lists_sklearn_photos_without_importing_sklearn():
    code = ("import sys; from decomviz.widgets._common import default_gallery; g = default_gallery(n_scenes=1); "
            "print(sorted(k for k in g if k.startswith('scikit-learn')), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['scikit-learn: china', 'scikit-learn: flower'] False"


def test_a_sklearn_photo_from_the_gallery_has_sklearns_pixels():
    datasets = pytest.importorskip("sklearn.datasets")
    from decomviz.widgets._common import default_gallery
    image = default_gallery(n_scenes=0)["scikit-learn: flower"]["load"]()
    assert np.array_equal(image, datasets.load_sample_image("flower.jpg"))
