"""COCO-style part annotations: masks as pycocotools rasterises them, several objects, crowds, clear errors that
become failed rows, and PartsWorld exported to COCO and read back exactly."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import decomviz as dv
from decomviz.datasets import AnnotationError, COCOParts, encode_mask

# a random tiny model often restores nothing for a pair; that warning is not what these tests are about
pytestmark = pytest.mark.filterwarnings("ignore:No component raised the score")

H, W = 60, 90  # the photo: another size and shape than any model input


def _write(root, data, images=((1, "a.png", H, W),)):
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for _, name, h, w in images:
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / name)
    data = {"images": [{"id": i, "file_name": n, "height": h, "width": w} for i, n, h, w in images], **data}
    (root / "ann.json").write_text(json.dumps(data))
    return root / "ann.json", root / "images"


def _hand_written(root):
    """Two cars: wheels as polygons, a body as a compressed RLE, another body as an uncompressed crowd RLE."""
    body = np.zeros((H, W), bool)
    body[10:30, 40:85] = True
    crowd = np.zeros((H, W), bool)
    crowd[35:50, 5:20] = True
    flat = crowd.flatten(order="F")  # COCO's uncompressed counts: column-major runs, starting with zeros
    edges = np.flatnonzero(np.diff(np.r_[0, flat.astype(int), 0])) if flat.any() else []
    runs = np.diff(np.r_[0, edges, flat.size]).tolist() if len(edges) else [flat.size]
    data = {
        "categories": [{"id": 1, "name": "car"}, {"id": 7, "name": "car/wheel", "supercategory": "car"},
                       {"id": 9, "name": "car:body", "supercategory": "car"}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentation": [[40, 10, 85, 10, 85, 40, 40, 40]]},
            {"id": 12, "image_id": 1, "category_id": 7, "iscrowd": 0,
             "segmentation": [[45.5, 30, 55, 30, 55, 39.5, 45.5, 39.5], [70, 31, 79.2, 31, 75, 40]]},
            {"id": 13, "image_id": 1, "category_id": 9, "iscrowd": 0, "segmentation": encode_mask(body)},
            {"id": 14, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[2, 30, 25, 30, 25, 55, 2, 55]]},
            {"id": 15, "image_id": 1, "category_id": 7, "iscrowd": 0, "segmentation": [[3, 50, 12, 50, 8, 58]]},
            {"id": 16, "image_id": 1, "category_id": 9, "iscrowd": 1,
             "segmentation": {"size": [H, W], "counts": runs}},
        ]}
    return _write(root, data)


def test_a_hand_written_file_gives_the_masks_pycocotools_rasterises(tmp_path):
    from pycocotools.coco import COCO
    ann, images = _hand_written(tmp_path)
    item = COCOParts(ann, images)[0]
    assert item.error is None and item.image.size == (W, H)
    coco = COCO(str(ann))
    truth = {}
    for a in coco.loadAnns(coco.getAnnIds(imgIds=[1])):
        key = {7: "car/wheel", 9: "car/body"}.get(a["category_id"])
        if key:
            truth[key] = truth.get(key, np.zeros((H, W), bool)) | coco.annToMask(a).astype(bool)
    assert set(item.parts) == {"car/wheel", "car/body"}
    for key, mask in truth.items():
        assert mask.any() and mask.shape == item.parts[key].shape
        np.testing.assert_array_equal(item.parts[key], mask)
    assert item.labels == ["car", "car"]  # one per object annotation


def test_part_names_come_from_the_name_or_the_supercategory(tmp_path):
    ann, images = _hand_written(tmp_path)
    assert COCOParts(ann, images).part_vocabulary == ["car/wheel", "car/body"]
    data = json.loads(ann.read_text())
    data["categories"] = [{"id": 1, "name": "car", "supercategory": "vehicle"},
                          {"id": 7, "name": "Car Wheel", "supercategory": "Car"},
                          {"id": 9, "name": "Body", "supercategory": "Car"}]
    ann.write_text(json.dumps(data))
    ds = COCOParts(ann, images, object_from="supercategory")
    assert ds.part_vocabulary == ["vehicle/car", "Car/Wheel", "Car/Body"]  # PartImageNet: every category a part
    assert ds[0].labels == ["vehicle", "Car"]                              # then the labels are the parts' objects


def test_crowd_regions_count_as_their_part_or_are_left_out(tmp_path):
    ann, images = _hand_written(tmp_path)
    kept, ignored = COCOParts(ann, images)[0], COCOParts(ann, images, crowd="ignore")[0]
    crowd_pixels = kept.parts["car/body"] & ~ignored.parts["car/body"]
    assert crowd_pixels[35:50, 5:20].all() and crowd_pixels.sum() == 15 * 15


@pytest.mark.parametrize("change,words", [
    (lambda d: d["annotations"][1].update(segmentation=[[45, 30, 300, 30, 55, 39]]), ["outside", "(300, 30)"]),
    (lambda d: d["annotations"][2].update(category_id=99), ["unknown category_id 99"]),
    (lambda d: d["annotations"][2]["segmentation"].update(size=[W, H]), ["RLE has size", f"{H}x{W}"]),
    (lambda d: d["annotations"][4].update(segmentation=[[3, 50, 12]]), ["at least 3 x, y pairs"]),
    (lambda d: d["images"][0].update(width=W + 1), [f"{W}x{H} pixels", f"{W + 1}x{H}"]),
])
def test_a_broken_entry_makes_a_failed_item_that_names_the_file_and_the_entry(tmp_path, change, words):
    ann, images = _hand_written(tmp_path)
    data = json.loads(ann.read_text())
    change(data)
    ann.write_text(json.dumps(data))
    item = COCOParts(ann, images)[0]
    assert item.error is not None and item.image is None and not item.parts
    assert "'ann.json'" in item.error and "a.png" in item.error
    for w in words:
        assert w in item.error, item.error


def test_a_file_that_cannot_be_read_as_a_whole_is_refused_with_its_entry(tmp_path):
    ann, images = _hand_written(tmp_path)
    data = json.loads(ann.read_text())
    data["annotations"][3]["image_id"] = 42
    ann.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"ann\.json.*annotations\[3\] \(id 14\).*image_id 42"):
        COCOParts(ann, images)
    ann.write_text('{"images": [], "annotations": [}')
    with pytest.raises(AnnotationError, match=r"ann\.json.*not valid JSON.*line 1"):
        COCOParts(ann, images)
    ann.write_text('{"images": []}')
    with pytest.raises(AnnotationError, match="no 'annotations' list"):
        COCOParts(ann, images)


def test_broken_entries_become_failed_rows_of_the_bank(tiny_rn, tmp_path):
    images = ((1, "a.png", H, W), (2, "b.png", 40, 40), (3, "missing.png", 40, 40))
    data = {"categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "car/wheel"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 2,
                             "segmentation": [[30, 10, 60, 10, 60, 50, 30, 50]]},
                            {"id": 2, "image_id": 2, "category_id": 2, "segmentation": [[1, 1, 90, 1, 20, 20]]}]}
    ann, root = _write(tmp_path, data, images)
    (root / "missing.png").unlink()
    bank = dv.extract(dv.DecomCAM(tiny_rn, n_components=2), COCOParts(ann, root), ["a photo of a {class}"],
                      out=tmp_path / "bank", progress=False)
    failed = {f["id"]: f["error"] for f in bank.failed}
    assert set(failed) == {"b.png", "missing.png"}
    assert "outside the 40x40 image" in failed["b.png"] and "not found" in failed["missing.png"]
    df = bank.to_pandas()
    assert set(df.image_id) == {"a.png"} and set(df.prompt) == {"a photo of a car"}
    assert bank.part_vocabulary == ["car/wheel"] and (bank.part_overlap[:, 0] > 0).any()


# ---------------------------------------------------------------------------------------------- PartsWorld round trip
PROMPTS = ["a photo of a {class}", "the {part} of a {class}"]


@pytest.fixture(scope="module")
def world():
    return dv.PartsWorld(2, seed=3, size=64, n_objects=1)


def same_rows(a, b):
    """Two banks hold the same rows: every scalar but the image id, and every vector (to float32 rounding)."""
    da, db = a.to_pandas(), b.to_pandas()
    assert len(da) == len(db) > 0
    for col in da.columns.drop("image_id"):
        if pd.api.types.is_float_dtype(da[col]):
            np.testing.assert_allclose(da[col], db[col], rtol=0, atol=1e-9, err_msg=col)
        else:
            assert da[col].tolist() == db[col].tolist(), col
    for name in ("ossm", "embedding", "part_overlap"):
        np.testing.assert_allclose(a.vectors(name), b.vectors(name), rtol=0, atol=1e-6, err_msg=name)


def test_partsworld_exported_to_coco_reads_back_pixel_for_pixel(world, tmp_path):
    from decomviz.datasets import PartsWorldItems
    path = world.export(tmp_path / "coco", format="coco")
    ds, ref = COCOParts(path / "annotations.json", path / "images"), PartsWorldItems(world)
    assert ds.part_vocabulary == ref.part_vocabulary and len(ds) == len(world)
    for i in range(len(world)):
        a, b = ref[i], ds[i]
        assert b.error is None and b.labels == a.labels and set(b.parts) == set(a.parts)
        np.testing.assert_array_equal(np.asarray(b.image), np.asarray(a.image))
        for key in a.parts:
            np.testing.assert_array_equal(b.parts[key], a.parts[key], err_msg=key)


@pytest.mark.slow
def test_extracting_the_exported_coco_gives_the_scenes_bank_and_part_report(world, tiny_rn, tmp_path):
    cam = dv.DecomCAM(tiny_rn, n_components=3)
    direct = dv.extract(cam, world, PROMPTS, out=tmp_path / "direct", progress=False)
    path = world.export(tmp_path / "coco")
    read = dv.extract(cam, COCOParts(path / "annotations.json", path / "images"), PROMPTS, out=tmp_path / "read",
                      progress=False)
    assert read.part_vocabulary == direct.part_vocabulary and not read.failed
    assert any(p.startswith("the ") for p in read.to_pandas().prompt)  # part prompts were made per image
    same_rows(direct, read)
    reports = [dv.ComponentClusters(3, min_weight=None, random_state=0).fit(b).part_report() for b in (direct, read)]
    assert abs(reports[0]["nmi"] - reports[1]["nmi"]) <= 1e-9
    assert reports[0]["clusters"] == reports[1]["clusters"]
