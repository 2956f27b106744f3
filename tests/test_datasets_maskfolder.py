"""Mask folders: PNG label maps with a JSON of label names, clear errors that become failed rows, and PartsWorld
exported as a mask folder and read back exactly."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import decomviz as dv
from decomviz.apps.cli import main
from decomviz.datasets import AnnotationError, MaskFolder

# a random tiny model often restores nothing for a pair; that warning is not what these tests are about
pytestmark = pytest.mark.filterwarnings("ignore:No component raised the score")


def _folder(root, maps, labels=None, sizes=None):
    """root/images/<name>.jpg (random pixels) and root/masks/<name>.png (the label maps given)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for name, lab in maps.items():
        h, w = (sizes or {}).get(name, lab.shape)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{name}.jpg")
        Image.fromarray(lab).save(root / "masks" / f"{name}.png")
    labels = labels if labels is not None else {"labels": ["background", "cat/head", "cat/tail", "dog/head"],
                                                "ignore": [255]}
    (root / "labels.json").write_text(json.dumps(labels))
    return root


def _map(h=40, w=70):
    lab = np.zeros((h, w), np.uint8)
    lab[5:15, 10:20] = 1      # cat/head
    lab[20:30, 40:65] = 2     # cat/tail
    lab[0:3, :] = 255         # void: no label
    return lab


def test_label_maps_give_one_mask_per_named_label(tmp_path):
    lab = _map()
    ds = MaskFolder(_folder(tmp_path, {"one": lab}))
    assert ds.part_vocabulary == ["cat/head", "cat/tail", "dog/head"] and len(ds) == 1
    item = ds[0]
    assert item.error is None and item.id == "one.jpg" and item.image.size == (70, 40)
    assert set(item.parts) == {"cat/head", "cat/tail"}  # a label with no pixel is no part of the image
    np.testing.assert_array_equal(item.parts["cat/head"], lab == 1)
    np.testing.assert_array_equal(item.parts["cat/tail"], lab == 2)
    assert item.labels == ["cat"]


def test_labels_may_be_a_plain_list_or_an_object_with_image_labels(tmp_path):
    labels = {"labels": {"0": None, "1": "cat/head", "2": "cat/tail"}, "ignore": [255],
              "image_labels": {"one.jpg": ["cat", "cat"]}}
    ds = MaskFolder(_folder(tmp_path, {"one": _map()}, labels))
    assert ds.part_vocabulary == ["cat/head", "cat/tail"] and ds[0].labels == ["cat", "cat"]


@pytest.mark.parametrize("case,words", [
    ("size", ["is 70x40 pixels but its image 'one.jpg' is 80x40"]),
    ("value", ["holds the value(s) [7]", "labels.json", "\"ignore\""]),
    ("missing", ["label map of 'one.jpg'", "not found"]),
    ("colour", ["is a RGB image", "one label index per pixel"]),
])
def test_a_broken_label_map_makes_a_failed_item_that_names_the_file(tmp_path, case, words):
    lab = _map()
    if case == "value":
        lab[30, 5] = 7
    root = _folder(tmp_path, {"one": lab}, sizes={"one": (40, 80)} if case == "size" else None)
    if case == "missing":
        (root / "masks" / "one.png").unlink()
    if case == "colour":
        Image.fromarray(np.stack([lab] * 3, -1)).save(root / "masks" / "one.png")
    item = MaskFolder(root)[0]
    assert item.error is not None and item.image is None and not item.parts
    for w in words:
        assert w in item.error, item.error


def test_a_labels_file_that_cannot_be_read_is_refused_naming_it(tmp_path):
    root = _folder(tmp_path, {"one": _map()}, labels={"names": ["background"]})
    with pytest.raises(AnnotationError, match=r"labels\.json.*'labels' list"):
        MaskFolder(root)
    (root / "labels.json").write_text('["background", 3]')
    with pytest.raises(AnnotationError, match=r"labels\.json.*label 1 is 3"):
        MaskFolder(root)


def test_the_command_line_extracts_a_mask_folder_with_part_templates(tiny_dirs, tmp_path):
    root = _folder(tmp_path / "data", {"one": _map(), "two": _map(48, 48)})
    rc = main(["extract", f"masks:{root}", "--prompt", "the {part} of a {class}", "--checkpoint",
               str(tiny_dirs["rn"]), "--n-components", "2", "--out", str(tmp_path / "bank")])
    assert rc == 0
    bank = dv.OSSMBank(tmp_path / "bank")
    assert set(bank.to_pandas().prompt) == {"the head of a cat", "the tail of a cat"}
    assert bank.part_vocabulary == ["cat/head", "cat/tail", "dog/head"] and bank.dataset["kind"] == "masks"
    assert (bank.part_overlap[:, :2].sum(1) > 0).any()


@pytest.mark.slow
def test_partsworld_exported_as_a_mask_folder_reads_back_and_extracts_the_same_bank(tiny_rn, tmp_path):
    from decomviz.datasets import PartsWorldItems
    world = dv.PartsWorld(2, seed=4, size=64, n_objects=1)
    ds, ref = MaskFolder(world.export(tmp_path / "masks", format="masks")), PartsWorldItems(world)
    assert ds.part_vocabulary == ref.part_vocabulary and len(ds) == len(world)
    for i in range(len(world)):
        a, b = ref[i], ds[i]
        assert b.error is None and b.labels == a.labels
        np.testing.assert_array_equal(np.asarray(b.image), np.asarray(a.image))
        shown = {k for k, m in a.parts.items() if m.any()}  # a label map holds no part without a pixel
        assert set(b.parts) == shown
        for key in shown:
            np.testing.assert_array_equal(b.parts[key], a.parts[key], err_msg=key)
    cam = dv.DecomCAM(tiny_rn, n_components=2)
    prompts = ["a photo of a {class}", "the {part} of a {class}"]
    direct = dv.extract(cam, world, prompts, out=tmp_path / "direct", progress=False)
    read = dv.extract(cam, ds, prompts, out=tmp_path / "read", progress=False)
    da, db = direct.to_pandas(), read.to_pandas()
    assert len(da) == len(db) > 0
    for col in da.columns.drop("image_id"):  # floats: the same computation on the same pixels, to rounding
        if pd.api.types.is_float_dtype(da[col]):
            np.testing.assert_allclose(da[col], db[col], rtol=0, atol=1e-9, err_msg=col)
        else:
            assert da[col].tolist() == db[col].tolist(), col
    for name in ("ossm", "part_overlap"):
        np.testing.assert_allclose(read.vectors(name), direct.vectors(name), rtol=0, atol=1e-6, err_msg=name)
    reports = [dv.ComponentClusters(2, min_weight=None, random_state=0).fit(b).part_report() for b in (direct, read)]
    assert abs(reports[0]["nmi"] - reports[1]["nmi"]) <= 1e-9
