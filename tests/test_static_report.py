"""Static reports: compact pictures, empty maps marked with their reason, terms linked to the glossary."""
import re

import numpy as np
import torch

import decomviz as dv
from decomviz.viz import static_report as sr


def test_an_empty_map_is_marked_on_its_panel_with_the_reason(tiny_rn, images):
    exp = dv.DecomCAM(tiny_rn, n_components=3)(images[:1], ["a red circle"])
    exp.flags["no_positive_contribution"] = torch.ones(1, 1, dtype=torch.bool)
    exp.flags["empty_map"] = torch.ones(1, 1, dtype=torch.bool)
    row = sr.methods_row({"decomcam": exp}, 0, 0)
    assert 'class="flagged"' in row and "no component raised the score" in row
    ok = dv.GradCAM(tiny_rn)(images[:1], ["a red circle"])
    ok.flags["empty_map"] = torch.zeros(1, 1, dtype=torch.bool)
    assert "flagged" not in sr.methods_row({"gradcam": ok}, 0, 0)


def test_every_term_a_report_links_is_defined_on_its_page(tiny_rn, images):
    exp = dv.DecomCAM(tiny_rn, n_components=3)(images[:1], ["a red circle"])
    page = sr.page("t", [sr.components_row(exp, 0, 0), sr.methods_row({"decomcam": exp}, 0, 0)])
    targets = set(re.findall(r'href="#([^"]+)"', page))
    ids = set(re.findall(r'id="([^"]+)"', page))
    assert {"g-weight-w", "g-contribution-d", "g-variance-share"} <= targets   # the components row links its terms
    assert targets <= ids                                                     # and each one resolves


def test_a_picture_is_a_small_webp():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    html = sr.picture(pixels, rng.random((224, 224)), "x")
    assert "data:image/webp;base64," in html and len(html) < 60_000   # the float map alone is 400 kB as text


def test_figures_name_a_missing_pair_and_save_checks_its_suffix(tiny_rn, images, tmp_path):
    import pytest
    exp = dv.GradCAM(tiny_rn)(images[:1], ["a red circle"])
    with pytest.raises(ValueError, match=r"no prompt 'a dog'; its prompts are 'a red circle'"):
        exp.figure(prompt="a dog")
    with pytest.raises(IndexError, match=r"image=5 is out of range: the explanation has 1 image"):
        exp.figure(image=5)
    with pytest.raises(ValueError, match=r"\.npz"):
        exp.save(tmp_path / "e.png")
    assert not (tmp_path / "e.png").exists()
