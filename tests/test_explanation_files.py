"""Explanation files: every method's result saved and loaded back; crafted or hostile files refused with a
clear ValueError, never unpickled."""
import json
import os
import pickle

import numpy as np
import pytest
import torch

import decomviz as dv
from tests.conftest import make_image

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


def test_explanation_roundtrip_for_every_method(tiny_rn, tmp_path):
    for name in dv.METHODS:
        if not dv.methods.registry.applies(name, tiny_rn):  # attention methods: tests/test_transformer_methods.py
            continue
        exp = dv.make_method(name, tiny_rn)([make_image(0), make_image(1)], ["a", "b"])
        exp.save(tmp_path / f"{name}.npz")
        back = dv.Explanation.load(tmp_path / f"{name}.npz")
        assert torch.equal(back.saliency, exp.saliency) and back.prompts == ["a", "b"], name


def _text_file(path):
    path.write_text("just some text")
    return path


def _crafted(tmp_path, **arrays):
    meta = {"format": 1, "method": "decomcam", "prompts": ["a", "b"], "params": {}}
    arrays.setdefault("__meta__", np.array(json.dumps(meta)))
    np.savez(tmp_path / "x.npz", **arrays)
    return tmp_path / "x.npz"


@pytest.mark.parametrize("make,match", [
    (lambda p: _text_file(p / "x.npz"), r"not an \.npz \(zip\) archive"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 3, 8, 8), np.float32)), r"saliency has shape \(1, 3, 8, 8\): its T"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8), np.float32)), "expected"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), images=np.zeros((2, 8, 8, 3), np.uint8)),
     r"images has shape .*its B is 2"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), images=np.zeros((1, 8, 8, 3))),
     "images has dtype float64"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), ossms=np.zeros((1, 2, 3, 8, 8), np.float32),
                        weights=np.zeros((1, 2, 4), np.float32)), "weights has shape .*its K is 4"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), flag__empty_map=np.zeros((1, 3), bool)),
     "flag__empty_map"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), bogus=np.zeros(3)), "not a field"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32), __meta__=np.array("{no json")), "JSON record"),
    (lambda p: _crafted(p, saliency=np.zeros((1, 2, 8, 8), np.float32),
                        __meta__=np.array(json.dumps({"format": 1, "method": 3, "prompts": [], "params": {}}))),
     "lacks a method name"),
    (lambda p: _crafted(p, images=np.zeros((1, 8, 8, 3), np.uint8)), "no 'saliency' entry"),
    (lambda p: _crafted(p, saliency=np.array([{"a": 1}], dtype=object)), "holds Python objects"),
])
def test_crafted_explanation_files_give_clear_value_errors(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        dv.Explanation.load(path)
    assert "allow_pickle" not in str(info.value)


def test_explanation_file_with_pickle_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    obj = np.empty(1, dtype=object)
    obj[0] = Evil()
    np.savez(tmp_path / "evil.npz", saliency=obj, __meta__=np.array('{"format": 1}'))
    with pytest.raises(ValueError, match="not a decomviz Explanation"):
        dv.Explanation.load(tmp_path / "evil.npz")
    assert not marker.exists()
    (tmp_path / "junk.npz").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError):
        dv.Explanation.load(tmp_path / "junk.npz")
    assert not marker.exists()
