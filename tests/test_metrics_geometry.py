"""Metrics on maps in the photo's geometry: NaN (outside the explained crop) is "not seen", so a map from
`saliency_on_original` with a mask in the photo's geometry scores as the explained map with the mask as the model
saw it (`images.to_model_view`)."""
import numpy as np
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from decomviz.explanation import Explanation
from decomviz.images import crop_box, to_model_view
from decomviz.metrics import energy_pointing_game, part_mass, pointing_game
from decomviz.metrics.result import dilate

S = 224
#: Energy shares of the two geometries differ by resampling only: the map is resized bilinearly onto the crop
#: region, the mask keeps its area up to rounding at its edges.
ENERGY_TOLERANCE = 0.03


def _explanation(sal: np.ndarray, h: int, w: int) -> Explanation:
    return Explanation(method="test", prompts=["p"], saliency=torch.from_numpy(sal)[None, None],
                       images=torch.zeros(1, S, S, 3, dtype=torch.uint8),
                       params={"inputs": [{"size": [h, w], "box": list(crop_box((w, h), (S, S), "crop"))}]})


def _blob(cy, cx, sigma):
    yy, xx = np.mgrid[0:S, 0:S]
    sal = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2)).astype(np.float32)
    return (sal - sal.min()) / (sal.max() - sal.min())


def test_a_map_in_the_photo_geometry_is_not_scored_zero():
    # a wide photo: the explained crop is its middle; the map's NaN margins are not seen
    sal = _blob(112, 150, 30)
    exp = _explanation(sal, 180, 320)
    orig = exp.saliency_on_original(0, 0)
    assert np.isnan(orig).any()
    mask = np.zeros((180, 320), bool)
    mask[60:140, 150:260] = True
    crop_mask = to_model_view(mask, (S, S), "crop")
    energy = float(energy_pointing_game(orig, mask).mean)
    assert energy > 0.1
    assert abs(energy - float(energy_pointing_game(sal, crop_mask).mean)) < ENERGY_TOLERANCE
    assert float(pointing_game(orig, mask).mean) == float(pointing_game(sal, crop_mask).mean) == 1.0
    assert torch.allclose(part_mass(orig, mask[None]), part_mass(sal, crop_mask[None]), atol=ENERGY_TOLERANCE)


def test_a_map_that_saw_nothing_is_a_miss():
    nothing = np.full((50, 60), np.nan, np.float32)
    mask = np.ones((50, 60), bool)
    assert float(pointing_game(nothing, mask).mean) == 0.0
    assert float(energy_pointing_game(nothing, mask).mean) == 0.0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(60, 420), w=st.integers(60, 420), cy=st.floats(0, S - 1), cx=st.floats(0, S - 1),
       sigma=st.floats(8, 60), box=st.tuples(*[st.floats(0, 1)] * 4))
def test_photo_geometry_maps_score_as_the_crop_maps(h, w, cy, cx, sigma, box):
    sal = _blob(cy, cx, sigma)
    orig = _explanation(sal, h, w).saliency_on_original(0, 0)
    a, b = sorted([int(box[0] * h), int(box[1] * h)])
    c, d = sorted([int(box[2] * w), int(box[3] * w)])
    assume(b - a >= 4 and d - c >= 4)
    # a mask edge within 2 photo pixels of the crop's edge may land on either side of it once resampled
    side = min(h, w)
    top, left = (h - side) / 2, (w - side) / 2
    assume(all(abs(e - t) > 2 for e in (a, b) for t in (top, top + side)))
    assume(all(abs(e - t) > 2 for e in (c, d) for t in (left, left + side)))
    mask = np.zeros((h, w), bool)
    mask[a:b, c:d] = True
    crop_mask = to_model_view(mask, (S, S), "crop")

    e_orig, e_crop = float(energy_pointing_game(orig, mask).mean), float(energy_pointing_game(sal, crop_mask).mean)
    assert abs(e_orig - e_crop) < ENERGY_TOLERANCE

    # the pointing game agrees wherever the peak is not within a few model pixels of the tolerance region's edge
    # (there, resampling may move it across)
    radius = int(round(15 * S / 224))
    region = dilate(torch.from_numpy(crop_mask), radius)
    peak = np.unravel_index(int(np.argmax(sal)), sal.shape)
    loose, strict = dilate(region, 3)[peak], ~dilate(~region, 3)[peak]
    if bool(loose) == bool(strict):
        assert float(pointing_game(orig, mask).mean) == float(pointing_game(sal, crop_mask).mean)
