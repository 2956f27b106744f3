"""The demo tells the story honestly: what each method is good for, what DecomCAM's components add, every empty
map explained on its panel, signs in words (`decomviz.apps.demo`)."""
import pytest
import torch

import decomviz as dv
from decomviz.apps.demo import DEMO_METHODS, GOOD_FOR, TRANSFORMER_METHODS, _empty_reason, _removal_words, demo_methods
from decomviz.viz import static_report as sr


def test_removal_wording_never_needs_a_sign_decoded():
    assert _removal_words("roof", 0.019) == "removing the roof lowers its cosine by 0.019"
    assert _removal_words("roof", -0.019) == "removing the roof raises its cosine by 0.019"
    assert "barely changes" in _removal_words("roof", 0.001)


def _exp(contrib, flagged):
    K = len(contrib)
    return dv.Explanation(method="decomcam", prompts=["a"], saliency=torch.zeros(1, 1, 8, 8),
                          images=torch.zeros(1, 8, 8, 3, dtype=torch.uint8),
                          flags={"no_positive_contribution": torch.tensor([[flagged]]),
                                 "empty_map": torch.tensor([[flagged]])},
                          ossms=torch.rand(1, 1, K, 8, 8), weights=torch.zeros(1, 1, K),
                          contributions=torch.tensor([[contrib]]), reference_score=torch.tensor([[0.8]]),
                          explained_variance=torch.full((1, 1, K), 1 / K))


def test_an_empty_decomcam_map_says_why_with_its_numbers():
    reason = _empty_reason(_exp([-0.01, -0.02], True), 0, 0)
    assert "s(r, t) = 0.800" in reason and "best d = -0.010" in reason and "Grad-CAM" in reason
    assert _empty_reason(_exp([0.1, 0.0], False), 0, 0) is None


def test_every_demo_method_has_a_use_and_components_show_on_a_shared_scale():
    assert set(GOOD_FOR) == set(DEMO_METHODS.values()) | set(TRANSFORMER_METHODS.values())
    exp = _exp([0.2, 0.0], False)
    exp.weights = torch.tensor([[[1.0, 0.0]]])
    shared = sr.components_row(exp, scale="shared", labels=["peak on the house", ""])
    assert "peak on the house" in shared
    with pytest.raises(ValueError, match="scale"):
        sr.components_row(exp, scale="log")


@pytest.mark.slow
def test_demo_report_says_which_method_for_what_and_what_components_add(tmp_path, capsys):
    from decomviz.apps.cli import main
    out = tmp_path / "demo.html"
    assert main(["demo", "--scenes", "1", "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    for text in ("Which method for what", "What the components add", "on one scale for all", "peak on the",
                 "by far the slowest"):
        assert text in page, text
    assert "lowers its cosine by -" not in page and "raises its cosine by -" not in page
    assert "decomcam: top component" in capsys.readouterr().out


def test_the_demo_adds_the_methods_made_for_transformers_on_a_vit_only(tiny_rn, tiny_vit):
    assert demo_methods(tiny_rn) == DEMO_METHODS
    assert demo_methods(tiny_vit) == {**DEMO_METHODS, **TRANSFORMER_METHODS}


@pytest.mark.slow
def test_the_demo_on_the_bundled_vit_shows_the_transformer_methods(tmp_path, capsys):
    from decomviz.apps.cli import main
    out = tmp_path / "demo.html"
    assert main(["demo", "--model", "parts-vit", "--scenes", "1", "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    for text in ("Chefer et al.", "Grad-ECLIP", "the methods made for transformers", "(ViTs only)"):
        assert text in page, text
    table = capsys.readouterr().out
    assert "chefer" in table and "grad-eclip" in table
