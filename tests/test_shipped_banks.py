"""The banks shipped with the notebooks (notebooks/data/bank-*) still match what their notebook would extract:
the same knobs and model, every pair present. A stale bank would make the notebook extract again (minutes in Voila)
instead of opening it in a second."""
from pathlib import Path

import pytest

import decomviz as dv

DATA = Path(__file__).resolve().parents[1] / "notebooks" / "data"
#: bank folder -> (the knobs of the DecomCAM its notebook builds on the default model, images in the bank)
SHIPPED = {"bank-04": (dict(n_components=6), 200), "bank-05": (dict(n_components=6), 32)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_bank_has_the_knobs_its_notebook_asks_for(name):
    knobs, n_images = SHIPPED[name]
    bank = dv.OSSMBank(DATA / name)
    assert bank.made_with(dv.DecomCAM(dv.load_model(), **knobs))
    assert not bank.made_with(dv.DecomCAM(dv.load_model(), **{**knobs, "n_components": 3}))
    df = bank.to_pandas(["image_index", "prompt", "component"])
    assert df.image_index.nunique() == n_images and len(df) > 0


def test_every_shipped_bank_is_checked():
    assert sorted(p.name for p in DATA.glob("bank-*")) == sorted(SHIPPED)


def test_notebook_05s_shipped_dataset_is_the_one_its_bank_was_made_from():
    """The COCO export shipped beside bank-05 reads back as 32 images with parts, the images the bank explained."""
    dataset = dv.datasets.COCOParts(DATA / "coco-05" / "annotations.json", DATA / "coco-05" / "images")
    bank = dv.OSSMBank(DATA / "bank-05")
    assert len(dataset) == 32 and dataset[0].parts
    ids = bank.to_pandas(["image_id"]).image_id.unique().tolist()
    assert sorted(ids) == sorted(dataset.id_of(i) for i in range(len(dataset)))
