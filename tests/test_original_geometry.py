"""Photos as given: a map laid back on the photo's own geometry, and a heat map drawn over the photo."""
import numpy as np
import pytest
import torch
from PIL import Image

import decomviz as dv


def _photo(h, w, box):
    """A grey photo with one red rectangle (top, left, bottom, right)."""
    px = np.full((h, w, 3), 120, np.uint8)
    top, left, bottom, right = box
    px[top:bottom, left:right] = (220, 30, 30)
    return px


@pytest.mark.parametrize("h,w,box", [(120, 300, (40, 150, 90, 200)),     # wide: the sides are cropped away
                                     (260, 100, (100, 20, 150, 70))])   # tall: top and bottom are cropped away
def test_saliency_on_original_puts_an_objects_map_back_on_its_pixels(tiny_rn, h, w, box):
    photo = _photo(h, w, box)
    exp = dv.GradCAM(tiny_rn)(photo, ["a red square"])
    # stand in for a perfect map: the red pixels of the explained crop
    crop = exp.images[0].numpy().astype(int)
    exp.saliency[0, 0] = torch.from_numpy(((crop[..., 0] > 170) & (crop[..., 1] < 90)).astype(np.float32))
    back = exp.saliency_on_original(0, 0)
    assert back.shape == (h, w)
    truth = np.zeros((h, w), bool)
    top, left, bottom, right = box
    truth[top:bottom, left:right] = True
    seen = np.isfinite(back)
    assert not seen.all() and seen.any()                    # the crop leaves part of the photo unexplained
    hot = seen & (np.nan_to_num(back) > 0.5)
    iou = (hot & truth).sum() / (hot | truth).sum()
    assert iou > 0.85, iou
    # the unexplained strips lie on the sides (wide) or at the top and bottom (tall), symmetrically
    cols, rows = seen.any(axis=0), seen.any(axis=1)
    if w > h:
        assert rows.all() and not cols[0] and not cols[-1] and abs(np.argmax(cols) - np.argmax(cols[::-1])) <= 2
    else:
        assert cols.all() and not rows[0] and not rows[-1]


def test_a_tensor_input_keeps_the_explained_geometry(tiny_rn):
    x = tiny_rn.normalize(torch.rand(1, 3, *tiny_rn.image_size))
    exp = dv.GradCAM(tiny_rn)(x, ["a red square"])
    assert exp.saliency_on_original(0, 0).shape == tuple(tiny_rn.image_size)


def test_select_keeps_the_geometry_of_its_image(tiny_rn):
    photos = [_photo(120, 300, (40, 170, 90, 230)), _photo(260, 100, (150, 20, 200, 70))]
    exp = dv.GradCAM(tiny_rn)(photos, ["a red square"])
    assert exp.select(1, 0).saliency_on_original(0, 0).shape == (260, 100)


def test_overlay_draws_the_map_on_the_photo_and_dims_what_was_not_explained(tiny_rn):
    photo = _photo(120, 300, (40, 170, 90, 230))
    exp = dv.GradCAM(tiny_rn)(photo, ["a red square"])
    pic = dv.overlay(photo, exp.saliency_on_original(0, 0))
    assert isinstance(pic, Image.Image) and pic.size == (300, 120)
    arr = np.asarray(pic).astype(int)
    assert (arr[:, :5] < 60).all()                         # outside the crop: dimmed grey (120 * 0.35)
    assert not np.array_equal(arr[:, 100:200], photo[:, 100:200])   # inside: the heat map over the photo
    small = dv.overlay(photo, exp.saliency[0, 0])          # any size is stretched to the photo
    assert small.size == (300, 120)
    with pytest.raises(ValueError, match="one map"):
        dv.overlay(photo, exp.saliency[0])
