"""Masks in the model's own geometry: a photo's part masks cropped or squashed as the model saw the photo, in the
extractor's part overlaps, the bank views, and the part metrics; wide and tall photos, both geometries."""
import json

import numpy as np
import pytest

import decomviz as dv
from decomviz.analysis.bank_images import BankImages
from decomviz.datasets import COCOParts, encode_mask
from decomviz.images import to_model_view

# a random tiny model often restores nothing for a pair; that warning is not what these tests are about
pytestmark = pytest.mark.filterwarnings("ignore:No component raised the score")

# (height, width) of the photo, and the quarter of it the part fills: the left one of a wide photo, the top
# one of a tall photo; a centre crop cuts both away, a squash keeps them
CASES = {"wide": ((64, 256), np.s_[:, :64]), "tall": ((256, 64), np.s_[:64, :])}
# a photo whose centre crop (to 128 x 128) is off by half a pixel: open_clip rounds the offset (to 2), Hugging
# Face's processors floor it (to 1)
ODD = ((128, 131), np.s_[:, :33])


def _photo(case):
    (h, w), where = ODD if case == "odd" else CASES[case]
    px = np.full((h, w, 3), 90, np.uint8)
    mask = np.zeros((h, w), bool)
    mask[where] = True
    px[mask] = (230, 40, 40)
    return px, mask


@pytest.fixture(scope="module")
def squashing(tiny_rn):
    """The tiny model, preprocessing as SigLIP does: the whole photo resized to its input."""
    model = tiny_rn.clone()
    model.resize_mode = "squash"
    return model


@pytest.fixture(scope="module")
def flooring(tiny_rn):
    """The tiny model, cropping as Hugging Face's processors do: the crop's offsets rounded down."""
    model = tiny_rn.clone()
    model.crop_offsets = "floor"
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_squash_keeps_a_quarter_part_at_its_area_and_a_crop_cuts_it_away(case):
    _, mask = _photo(case)
    size = (128, 128)
    squashed, cropped = to_model_view(mask, size, "squash"), to_model_view(mask, size, "crop")
    assert squashed.dtype == bool and squashed.shape == size
    assert abs(squashed.mean() - 0.25) <= 1 / 128  # its area share, to one row or column of rounding
    assert not cropped.any()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_extractor_scores_parts_where_the_model_saw_them(tiny_rn, squashing, case):
    photo, mask = _photo(case)
    batch = {"image": [photo], "id": ["p"], "parts": [{"thing/quarter": mask}]}
    overlap = {}
    for name, model in (("squash", squashing), ("crop", tiny_rn)):
        table = dv.Extractor(model, ["a red thing"], part_vocabulary=["thing/quarter"], n_components=4)(batch)
        overlap[name] = np.array(table.column("part_overlap").to_pylist(), np.float32)[:, 0]
        assert table.schema.metadata and json.loads(table.schema.metadata[b"decomviz"])["protocol"][
            "resize_mode"] == name
    assert (overlap["squash"] > 0).any()   # the part is in the model's view: its components reach it
    assert not overlap["crop"].any()        # cut away by the crop: no component can be on it


def _coco(root):
    """A COCO dataset of the wide and the tall photo, each with its quarter part."""
    from PIL import Image
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i, case in enumerate(sorted(CASES) + ["odd"]):
        photo, mask = _photo(case)
        Image.fromarray(photo).save(root / "images" / f"{case}.png")
        images.append({"id": i, "file_name": f"{case}.png", "height": photo.shape[0], "width": photo.shape[1]})
        anns.append({"id": i, "image_id": i, "category_id": 1, "segmentation": encode_mask(mask), "iscrowd": 0})
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing/quarter"}]}
    (root / "ann.json").write_text(json.dumps(data))
    return COCOParts(root / "ann.json", root / "images")


@pytest.mark.parametrize("geometry", ["squash", "crop", "crop-floor"])
def test_the_bank_views_show_images_and_parts_as_the_model_saw_them(tiny_rn, squashing, flooring, tmp_path,
                                                                     geometry):
    model = {"squash": squashing, "crop": tiny_rn, "crop-floor": flooring}[geometry]
    mode, offsets = ("squash", "round") if geometry == "squash" else ("crop", model.crop_offsets)
    ds = _coco(tmp_path / "data")
    bank = dv.extract(dv.DecomCAM(model, n_components=2), ds, ["a red thing"], out=tmp_path / "bank",
                      progress=False)
    assert bank.protocol["resize_mode"] == mode and bank.protocol["crop_offsets"] == offsets
    views = BankImages(bank)  # no root=: the bank records where its dataset is
    assert views.has_parts
    for i in range(len(ds)):
        item = ds[i]
        seen = dv.GradCAM(model)(item.image, ["x"]).images[0].numpy()
        np.testing.assert_array_equal(views.pixels(i), seen)  # the very pixels the model explained
        part = views.parts(i)["thing/quarter"]
        np.testing.assert_array_equal(part, to_model_view(item.parts["thing/quarter"], model.image_size, mode,
                                                          offsets=offsets))
        if item.id != "odd.png":
            assert part.any() == (mode == "squash")
    odd = ds.id_of(2) == "odd.png" and to_model_view(_photo("odd")[1], model.image_size, mode, offsets="floor")
    if geometry == "crop":  # the two roundings differ by a column on this photo: the bank used the model's
        assert not np.array_equal(views.parts(2)["thing/quarter"], odd)


@pytest.mark.parametrize("case", sorted(CASES))
def test_part_metrics_take_photo_masks_through_masks_as_seen(tiny_rn, squashing, case):
    photo, mask = _photo(case)
    for model, mode in ((squashing, "squash"), (tiny_rn, "crop")):
        exp = dv.DecomCAM(model, n_components=3)(photo, ["a red thing"])
        seen = dv.metrics.masks_as_seen(exp, mask[None])
        assert tuple(seen.shape) == (1, *model.image_size)
        np.testing.assert_array_equal(seen[0].numpy(), to_model_view(mask, model.image_size, mode))
        shares = dv.metrics.part_mass(exp.ossms[0, 0], seen)
        assert (shares > 0).any() == (mode == "squash")
        dv.metrics.part_alignment(exp.ossms[0, 0], seen)  # one size: accepted
    with pytest.raises(ValueError, match="masks_as_seen"):
        dv.metrics.part_alignment(exp.ossms[0, 0], mask[None])
    with pytest.raises(ValueError, match="do not match image 0"):
        dv.metrics.masks_as_seen(exp, mask[None, :10])


def test_masks_as_seen_follows_the_models_crop_rounding(tiny_rn, flooring):
    photo, mask = _photo("odd")
    seen = {}
    for model in (tiny_rn, flooring):
        exp = dv.GradCAM(model)(photo, ["a red thing"])
        seen[model.crop_offsets] = dv.metrics.masks_as_seen(exp, mask).numpy()
        np.testing.assert_array_equal(seen[model.crop_offsets],
                                      to_model_view(mask, model.image_size, "crop", offsets=model.crop_offsets))
    assert not np.array_equal(seen["round"], seen["floor"])  # one column apart: the rounding was read right


def test_part_mass_refuses_masks_of_another_shape_than_the_maps():
    maps = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="masks_as_seen"):
        dv.metrics.part_mass(maps, np.ones((1, 64, 256), bool))
    shares = dv.metrics.part_mass(maps, np.ones((1, 32, 32), bool))  # same shape, finer: resized, accepted
    np.testing.assert_allclose(shares.numpy(), 1.0, rtol=0, atol=1e-6)
