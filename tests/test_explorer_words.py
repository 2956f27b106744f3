"""The Explorer shows each prompt with its words shaded by their share of the score (issue: which words matter)."""
import re

import numpy as np
import pytest

from decomviz.methods.tokens import TokenAttribution
from decomviz.widgets.explorer import Explorer
from decomviz.widgets.prompt_words import PromptWords


def _shaded_words(html_text: str):
    return re.findall(r"<span title=\"([+-][0-9.]+)\"[^>]*>([^<]*)</span>", html_text)


def test_a_run_shades_the_words_of_the_prompt_on_show(tiny_rn):
    ex = Explorer(tiny_rn, n_scenes=2)
    ex.set_prompts("a red car\na house")
    ex.set_knobs(n_components=3, top_channels=32)
    assert ex.run(wait=True) is not None, ex.status_text
    att = ex.word_shares
    assert isinstance(att, TokenAttribution) and att.tokens == [["a", "red", "car"], ["a", "house"]]
    # completeness at the Explorer's 16 path points: the shares sum to the score's change within 5 %
    assert float(att.completeness_gap().max()) < 0.05
    words = _shaded_words(ex._banner.value)
    assert [w for _, w in words] == ["a", "red", "car"] and ex.results.children[0] is ex._banner
    assert [float(v) for v, _ in words] == pytest.approx([v for _, v in att.pairs(0, 0)], abs=1e-4)
    ex.show_prompt(1)
    assert [w for _, w in _shaded_words(ex._banner.value)] == ["a", "house"]


def test_the_toggle_turns_the_shading_off(tiny_rn):
    ex = Explorer(tiny_rn, n_scenes=2)
    ex.words.toggle.value = False
    ex.set_prompts("a car")
    ex.set_knobs(n_components=3, top_channels=32)
    assert ex.run(wait=True) is not None, ex.status_text
    assert ex.word_shares is None and not _shaded_words(ex._banner.value)


def test_a_text_tower_without_a_token_embedding_gives_a_note_not_an_error(tiny_rn, monkeypatch):
    words = PromptWords(tiny_rn)
    monkeypatch.setattr(tiny_rn.tower, "token_embedding", lambda: None)
    result = words.compute(np.full((64, 64, 3), 128, np.uint8), ["a car"])
    assert isinstance(result, str) and "token embedding" in result
    assert "No word shares" in PromptWords.html(result, 0)



def test_a_failure_of_the_word_shares_never_costs_the_run_its_maps(tiny_rn, monkeypatch):
    import decomviz.widgets.prompt_words as pw

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")
    monkeypatch.setattr(pw, "token_attribution", broken)
    ex = Explorer(tiny_rn, n_scenes=2)
    ex.set_prompts("a car")
    ex.set_knobs(n_components=3, top_channels=32)
    assert ex.run(wait=True) is not None, ex.status_text
    assert ex.figures and "No word shares: RuntimeError: out of memory" in ex._banner.value
