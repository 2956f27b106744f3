import numpy as np
import pytest
import torch

import decomviz as dv
from decomviz.metrics import dilate


@pytest.fixture
def mask():
    m = np.zeros((224, 224), bool)
    m[50:100, 60:120] = True
    return m


def test_pointing_game_perfect_inverted_uniform(mask):
    perfect = mask.astype(np.float32)
    assert dv.metrics.pointing_game(perfect, mask).mean == 1.0
    inverted = 1.0 - perfect
    assert dv.metrics.pointing_game(inverted, mask, tolerance=0).mean == 0.0
    assert dv.metrics.pointing_game(np.zeros_like(perfect), mask).mean == 0.0  # empty map is a miss


def test_pointing_game_tolerance(mask):
    sal = np.zeros((224, 224), np.float32)
    sal[110, 90] = 1.0  # 11 px below the mask
    assert dv.metrics.pointing_game(sal, mask, tolerance=0).mean == 0.0
    assert dv.metrics.pointing_game(sal, mask, tolerance=15).mean == 1.0
    small = sal[::2, ::2]  # at 112 px the tolerance scales to 8 px: (55, 45) is 6 px below the 25..49 rows
    assert dv.metrics.pointing_game(small, mask[::2, ::2], tolerance=15).protocol["radius_px"] == 8


def test_energy_pointing_game_values(mask):
    assert dv.metrics.energy_pointing_game(mask.astype(float), mask).mean == pytest.approx(1.0)
    assert dv.metrics.energy_pointing_game(1.0 - mask, mask).mean == pytest.approx(0.0)
    uniform = np.ones((224, 224))
    assert dv.metrics.energy_pointing_game(uniform, mask).mean == pytest.approx(mask.mean())


def test_batches_and_broadcast(mask):
    sal = torch.stack([torch.from_numpy(mask.astype(np.float32)), torch.from_numpy(1.0 - mask.astype(np.float32))])
    res = dv.metrics.pointing_game(sal, mask, tolerance=0)
    assert res.values.tolist() == [1.0, 0.0] and res.mean == 0.5
    with pytest.raises(ValueError, match="differ in size"):
        dv.metrics.pointing_game(sal, mask[:100])


def test_dilate_disc():
    m = torch.zeros(1, 21, 21, dtype=torch.bool)
    m[0, 10, 10] = True
    d = dilate(m, 3)
    assert d.sum() == 29  # lattice points in a disc of radius 3
