"""Class-discriminative maps with a contrast set that holds the explained prompt (contrast=[every class], as a
labelled dataset gives): the prompt competes once in the softmax, and the protocol says it was dropped from the
contrast."""
import numpy as np
import pytest
import torch

import decomviz as dv

from .conftest import make_image

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")

CLASSES = ["a photo of a house", "a photo of a car", "a photo of a tree"]


def _softmax_by_hand(model, image, prompt):
    emb = model.encode_image(image).double()
    text = model.encode_text(CLASSES).double()
    probs = (model.logit_scale.double() * emb @ text.T).softmax(-1)[0]
    return float(probs[CLASSES.index(prompt)])


def test_pairwise_softmax_with_every_class_as_contrast_counts_each_prompt_once(tiny_rn):
    cam = dv.GradCAM(tiny_rn, score="softmax", contrast=CLASSES)
    images = [make_image(i) for i in range(3)]
    exps = cam.pairwise(images, CLASSES)
    for image, prompt, exp in zip(images, CLASSES, exps):
        expected = _softmax_by_hand(tiny_rn, image, prompt)
        assert float(exp.base_score[0, 0]) == pytest.approx(expected, abs=1e-5)
        assert exp.params["contrast_dropped"] == [prompt]
        assert prompt not in exp.params["contrast"] and len(exp.params["contrast"]) == 2


def test_a_call_with_all_classes_explained_and_as_contrast_equals_one_without_contrast(tiny_rn):
    image = make_image(4)
    with_contrast = dv.DecomCAM(tiny_rn, score="softmax", contrast=CLASSES, n_components=3, top_channels=32)
    plain = dv.DecomCAM(tiny_rn, score="softmax", n_components=3, top_channels=32)
    a, b = with_contrast(image, CLASSES), plain(image, CLASSES)
    assert torch.allclose(a.base_score, b.base_score, atol=1e-6)
    assert np.isclose(float(a.base_score.sum()), 1.0, atol=1e-5)
    assert a.params["contrast_dropped"] == CLASSES and "contrast_dropped" not in b.params
    assert cam_unchanged(with_contrast)


def cam_unchanged(cam):
    return list(cam.contrast) == CLASSES
