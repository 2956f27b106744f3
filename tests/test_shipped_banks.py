"""The banks shipped with the notebooks (notebooks/data/bank-*) still match what their notebook would extract:
the same knobs and model, every pair present. A stale bank would make the notebook extract again (minutes in Voila)
instead of opening it in a second."""
from pathlib import Path

import pytest

import decomviz as dv

DATA = Path(__file__).resolve().parents[1] / "notebooks" / "data"
#: bank folder -> (the DecomCAM its notebook builds on the default model, images, prompts per image)
SHIPPED = {"bank-04": (dict(n_components=6), 200, 1)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_bank_has_the_knobs_its_notebook_asks_for(name):
    knobs, n_images, _ = SHIPPED[name]
    bank = dv.OSSMBank(DATA / name)
    assert bank.made_with(dv.DecomCAM(dv.load_model(), **knobs))
    assert not bank.made_with(dv.DecomCAM(dv.load_model(), **{**knobs, "n_components": 3}))
    df = bank.to_pandas(["image_index", "prompt", "component"])
    assert df.image_index.nunique() == n_images and len(df) > 0


def test_every_shipped_bank_is_checked():
    assert sorted(p.name for p in DATA.glob("bank-*")) == sorted(SHIPPED)
