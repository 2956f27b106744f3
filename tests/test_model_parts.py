"""The model-side parts measures of `decomviz bench` on hand-made models whose answers are known."""
import numpy as np
import pytest
import torch

from decomviz.apps.bench.parts import attribute_binding, colour_sensitivity, single_object_scenes
from decomviz.data import PALETTE


class Blind:
    """Every image and every text embeds to the same vector: blind to colour (and to everything else)."""

    def encode_image(self, images):
        return torch.ones(len(images), 4) / 2

    def encode_text(self, texts):
        return torch.ones(len(texts), 4) / 2


class Seeing(Blind):
    """Images embed as their mean colour, texts by the colour word they name: colour-sensitive on both sides."""

    def encode_image(self, images):
        e = torch.tensor(np.stack([np.asarray(im, np.float32).reshape(-1, 3).mean(0) for im in images]))
        e = torch.cat([e - e.mean(1, keepdim=True), torch.ones(len(images), 1)], 1)
        return e / e.norm(dim=1, keepdim=True)

    def encode_text(self, texts):
        e = torch.stack([torch.eye(len(PALETTE))[[c in t.split() for c in PALETTE].index(True)] for t in texts])
        return e


def test_colour_sensitivity_tells_a_blind_model_from_a_seeing_one():
    scenes = single_object_scenes(3, seed=2)
    blind, seeing = colour_sensitivity(Blind(), scenes), colour_sensitivity(Seeing(), scenes)
    assert blind["pairs"] == seeing["pairs"] > 0
    assert blind["recoloured_image_cosine"] == pytest.approx(1.0) and blind["colour_prompt_cosine"] == pytest.approx(1.0)
    assert seeing["recoloured_image_cosine"] < 0.9999 and seeing["colour_prompt_cosine"] == pytest.approx(0.0)


class SeesTheLargestPart(Seeing):
    """Images embed as the one palette colour that covers the most pixels (the largest part's: parts are drawn in
    flat palette colours), texts by their colour word: binds the largest part's colour and no other."""

    def encode_image(self, images):
        rgb = torch.tensor(list(PALETTE.values()))
        out = []
        for im in images:
            px = torch.tensor(np.asarray(im).reshape(-1, 3).astype(np.int64))
            counts = (px[:, None, :] == rgb[None]).all(-1).sum(0)
            out.append(torch.eye(len(PALETTE))[int(counts.argmax())])
        return torch.stack(out)


def test_attribute_binding_by_part_size():
    scenes = single_object_scenes(12, seed=4)
    blind, largest = attribute_binding(Blind(), scenes), attribute_binding(SeesTheLargestPart(), scenes)
    assert blind["pairs"] == largest["pairs"] > 0
    assert largest["binding_largest_part"] == pytest.approx(1.0)
    assert largest["binding_smallest_part"] < 0.5
    assert largest["attribute_binding"] < 0.75            # the other parts' colours are not seen
