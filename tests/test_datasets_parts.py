"""Ground truth with any part dataset: prompt templates filled from an image's labels and parts, part overlaps
attached to a bank after the fact, the refusal of parts without a vocabulary, and every part view and part
metric on a COCO dataset."""
import json

import numpy as np
import pytest

import decomviz as dv
from decomviz.analysis.cluster_views import cluster_report_figures
from decomviz.analysis.datasets import check_templates, resolve_prompts
from decomviz.apps.cli import main
from decomviz.datasets import COCOParts, Item
from decomviz.images import to_model_view

# a random tiny model often restores nothing for a pair; that warning is not what these tests are about
pytestmark = pytest.mark.filterwarnings("ignore:No component raised the score")


def _item(**parts):
    masks = {k: np.asarray(v, bool) for k, v in parts.items()}
    return Item(0, "x", labels=["car", "house", "car"], parts=masks)


def test_templates_fill_class_once_per_label_and_part_once_per_part_shown():
    item = _item(**{"car/wheel": [[1, 0]], "house/roof": [[0, 1]], "car/door": [[0, 0]]})
    assert resolve_prompts(item, ["a photo of a {class}", "a {}", "the {part} of a {class}", "a {part}", "plain"]) \
        == ["a photo of a car", "a photo of a house", "a car", "a house", "the wheel of a car",
            "the roof of a house", "a wheel", "a roof", "plain"]  # parts in name order; no door: its mask is empty
    assert resolve_prompts(item, "{{literal}} {class}") == ["{literal} car", "{literal} house"]


@pytest.mark.parametrize("template,words", [("the {part} of a {label}", ["{label}", "{part}"]),
                                            ("a {0}", ["{0}"]), ("a {class!r}", ["{class!r}"]),
                                            ("the {part} of a {", ["not a valid template"])])
def test_a_template_with_another_field_is_refused_before_any_work(template, words):
    with pytest.raises(ValueError) as err:
        check_templates([template])
    for w in words:
        assert w in str(err.value)
    assert "'{{'" in str(err.value)


def test_a_part_template_on_an_image_without_parts_is_that_images_failure():
    with pytest.raises(ValueError, match="needs parts, but item x has none"):
        resolve_prompts(Item(0, "x", labels=["car"]), ["the {part} of a {class}"])
    with pytest.raises(ValueError, match="name parts 'class/part'"):
        resolve_prompts(_item(wheel=[[1]]), ["the {part} of a {class}"])
    assert resolve_prompts(_item(wheel=[[1]]), ["a {part}"]) == ["a wheel"]


class _PartsWithoutVocabulary:
    """A user's dataset whose items carry parts, but which does not say which parts there are."""

    def __init__(self, world):
        self.world = world

    def __len__(self):
        return len(self.world)

    def __getitem__(self, i):
        scene = self.world[i]
        return Item(i, f"s{i}", scene.image, [o.label for o in scene.objects],
                    parts={f"{scene.objects[p.object].label}/{p.name}": p.mask for p in scene.parts})

    def describe(self):
        return {"kind": "mine", "n": len(self)}


def test_a_dataset_with_parts_and_no_vocabulary_is_refused(tiny_rn, tmp_path):
    ds = _PartsWithoutVocabulary(dv.PartsWorld(2, seed=0, size=64))
    assert isinstance(ds, dv.datasets.Dataset)
    with pytest.raises(ValueError, match=r"has ground-truth parts .* no part_vocabulary"):
        dv.extract(dv.DecomCAM(tiny_rn, n_components=2), ds, ["a {class}"], out=tmp_path / "bank", progress=False)
    ds.part_vocabulary = [f"{c}/{p}" for c in ds.world.classes for p in ds.world.parts[c]]
    bank = dv.extract(dv.DecomCAM(tiny_rn, n_components=2), ds, ["a {class}"], out=tmp_path / "bank2",
                      progress=False)
    assert bank.part_vocabulary == ds.part_vocabulary and bank.part_overlap.any()


# ---------------------------------------------------------------------------------------------- a COCO bank
@pytest.fixture(scope="module")
def coco_bank(tiny_rn, tmp_path_factory):
    """A PartsWorld set exported to COCO (its images are also a plain folder), extracted with its parts."""
    root = tmp_path_factory.mktemp("coco-bank")
    world = dv.PartsWorld(4, seed=2, size=64, n_objects=1)
    path = world.export(root / "coco")
    ds = COCOParts(path / "annotations.json", path / "images")
    cam = dv.DecomCAM(tiny_rn, n_components=3)
    bank = dv.extract(cam, ds, ["a photo of a {class}"], out=root / "bank", progress=False)
    return {"root": root, "ds": ds, "cam": cam, "bank": bank}


def test_parts_attached_after_the_fact_equal_those_of_extraction(coco_bank):
    root, ds, cam, bank = (coco_bank[k] for k in ("root", "ds", "cam", "bank"))
    (root / "coco" / "images" / "zz-broken.png").write_bytes(b"not a png")  # a failed row, kept as it is
    plain = dv.extract(cam, root / "coco" / "images", ["a photo of a thing"], out=root / "plain", progress=False)
    assert plain.part_vocabulary == [] and plain.part_overlap.shape[1] == 0
    assert [f["id"] for f in plain.failed] == ["zz-broken.png"]
    with_parts = dv.extract(cam, ds, ["a photo of a thing"], out=root / "with", progress=False)
    attached = dv.attach_parts(plain, ds, root / "attached")
    assert attached.part_vocabulary == ds.part_vocabulary and attached.dataset["kind"] == "coco"
    assert len(attached) == len(plain) and attached.failed == plain.failed
    # the OSSM upsampled as the engine did, scored on the same masks: equal to float32 rounding
    np.testing.assert_allclose(attached.part_overlap, with_parts.part_overlap, rtol=0, atol=1e-5)
    assert attached.part_overlap.any()
    with pytest.raises(ValueError, match="not empty"):
        dv.attach_parts(plain, ds, root / "attached")
    with pytest.raises(ValueError, match="no part vocabulary"):
        dv.attach_parts(plain, root / "coco" / "images", root / "again")


def test_every_part_view_shows_a_coco_banks_parts_without_root(coco_bank):
    from decomviz.widgets import ClusterGallery, PartInspector
    bank = coco_bank["bank"]
    clusters = dv.ComponentClusters(3, min_weight=None, random_state=0).fit(bank)
    report = clusters.part_report()
    assert 0 <= report["nmi"] <= 1 and sum(c["size"] for c in report["clusters"]) == len(clusters.rows_)
    table, names = clusters.cluster_part_table()
    assert table.sum() == len(clusters.rows_) and set(names) <= set(bank.part_vocabulary) | {"background"}
    assert len(clusters.name_by_parts(report=report)) == clusters.n_clusters_
    figs = cluster_report_figures(bank, clusters, n_exemplars=2)
    assert any(t.name == "cluster x part" for f in figs for t in f.data)
    exemplar_titles = [a.text for f in figs for a in f.layout.annotations if "w=" in (a.text or "")]
    assert exemplar_titles and all(a.count("<br>") == 2 for a in exemplar_titles)  # each names its best part
    gallery = ClusterGallery(bank, clusters)
    gallery.select_point(0)
    assert len(gallery.detail.data) == 3  # the image, its OSSM, the image's ground-truth parts
    inspector = PartInspector(bank, clusters)
    assert inspector.has_parts
    fig = inspector.figure(inspector.image_ids[0])
    assert any(t.name == "parts" for t in fig.data)
    item = coco_bank["ds"][inspector.image_ids[0]]
    shown = inspector.images.parts(inspector.image_ids[0])
    assert set(shown) == set(item.parts)


def test_every_part_metric_takes_a_coco_items_masks(coco_bank):
    item = coco_bank["ds"][1]
    exp = dv.DecomCAM(coco_bank["cam"].model, n_components=3)(item.image, [f"a photo of a {item.labels[0]}"])
    names = [k for k, m in item.parts.items() if m.any()]
    masks = dv.metrics.masks_as_seen(exp, np.stack([item.parts[k] for k in names]))
    ossms = exp.ossms[0, 0]
    aligned = dv.metrics.part_alignment(ossms, masks)
    assert aligned["part_coverage"].values.shape == (len(names),)
    shares = dv.metrics.part_mass(ossms, masks)
    assert shares.shape == (3, len(names)) and (shares.sum(-1) <= 1 + 1e-5).all()
    parts = dv.metrics.component_parts(ossms, masks)
    assert parts["part"].shape == (3,)
    scores = dv.metrics.cluster_scores(np.array([0, 0, 1]), np.array(["a", "a", "b"]))
    assert scores["nmi"] == pytest.approx(1.0, abs=1e-12)


def test_the_command_line_extracts_a_coco_dataset_with_part_templates(coco_bank, tiny_dirs, tmp_path):
    root = coco_bank["root"] / "coco"
    data = json.loads((root / "annotations.json").read_text())  # its first image only: part prompts are many
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == data["images"][0]["id"]]
    data["images"] = data["images"][:1]
    (tmp_path / "one.json").write_text(json.dumps(data))
    args = ["extract", f"coco:{tmp_path / 'one.json'}", "--prompt", "the {part} of a {class}",
            "--checkpoint", str(tiny_dirs["rn"]), "--n-components", "2", "--out", str(tmp_path / "bank")]
    assert main(args[:2] + args[4:]) == 2  # no --images: refused, naming the option
    assert main(args + ["--images", str(root / "images")]) == 0
    bank = dv.OSSMBank(tmp_path / "bank")
    assert bank.dataset["kind"] == "coco" and all(p.startswith("the ") for p in bank.to_pandas().prompt)
    assert bank.part_vocabulary == coco_bank["ds"].part_vocabulary and bank.n_images == 1


def test_a_bank_of_a_users_own_dataset_shows_its_parts_given_the_dataset(tiny_rn, tmp_path):
    from decomviz.widgets import PartInspector
    ds = _PartsWithoutVocabulary(dv.PartsWorld(3, seed=1, size=64, n_objects=1))
    ds.part_vocabulary = [f"{c}/{p}" for c in ds.world.classes for p in ds.world.parts[c]]
    bank = dv.extract(dv.DecomCAM(tiny_rn, n_components=2), ds, ["a {class}"], out=tmp_path / "bank",
                      progress=False)
    clusters = dv.ComponentClusters(2, min_weight=None, random_state=0).fit(bank)
    inspector = PartInspector(bank, clusters, dataset=ds)  # its record ("kind": "mine") cannot open it again
    assert inspector.images.has_parts
    shown = inspector.images.parts(0)
    truth = {k: m for k, m in ds[0].parts.items()}
    assert set(shown) == set(truth)
    key = next(iter(truth))
    np.testing.assert_array_equal(shown[key], to_model_view(truth[key], tiny_rn.image_size, "crop"))
    assert any(t.name == "parts" for t in inspector.figure(0).data)
