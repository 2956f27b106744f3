"""Which words of a prompt drive the match: integrated gradients over the token embeddings, on open_clip and Hugging
Face text towers; completeness (the shares sum to the score's change from the baseline); the report's shading."""
import warnings

import pytest
import torch

import decomviz as dv
from decomviz.viz import static_report as sr
from tests.conftest import make_image
from tests.tower_zoo import hf_model, open_clip_model

pytestmark = pytest.mark.filterwarnings("ignore")

PROMPT = "a red car next to a house"


def _hf_word_tokenizer():
    """A Hugging Face tokenizer built offline whose end token is the small HF models' (id 999)."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    words = ["<pad>", "<unk>", "<s>", "a", "red", "car", "next", "to", "house", "blue", "square"]
    vocab = {w: i for i, w in enumerate(words)} | {"</s>": 999}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 999)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                                bos_token="<s>", eos_token="</s>")


def _check(att, words):
    assert att.tokens[0] == words
    assert att.shares.shape[:2] == att.score.shape
    assert torch.isfinite(att.shares[:, 0, :len(words)]).all()
    assert bool((att.completeness_gap() < 0.05).all()), att.completeness_gap()  # within 5 %
    total = torch.nan_to_num(att.shares).sum(-1)
    torch.testing.assert_close(total, att.score - att.baseline_score, rtol=0.05, atol=1e-4)


@pytest.mark.slow
def test_word_shares_sum_to_the_change_of_the_score_on_an_open_clip_text_tower():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = dv.load_model(open_clip_model("openclip-vit"), device="cpu")
    att = dv.token_attribution(model, [make_image(1), make_image(2)], [PROMPT, "a blue square"], steps=32)
    _check(att, PROMPT.split())
    assert att.tokens[1] == ["a", "blue", "square"] and torch.isnan(att.shares[:, 1, 3:]).all()
    with torch.no_grad():  # the score is the model's
        expected = model.encode_image([make_image(1), make_image(2)]) @ model.encode_text([PROMPT, "a blue square"]).T
    torch.testing.assert_close(att.score, expected, rtol=1e-4, atol=1e-5)
    assert [w for w, _ in att.pairs(0, 0)] == PROMPT.split()


def test_word_shares_sum_to_the_change_of_the_score_on_a_hugging_face_text_tower():
    model = dv.load_model(hf_model("clip"), tokenizer=_hf_word_tokenizer(), device="cpu")
    att = dv.token_attribution(model, make_image(3), PROMPT, steps=32, score="logit")
    _check(att, PROMPT.split())
    assert att.params["score"] == "logit" and att.params["steps"] == 32


@pytest.mark.slow
def test_word_shares_on_the_bundled_vit():
    model = dv.load_model("parts-vit", device="cpu")
    att = dv.token_attribution(model, make_image(4), PROMPT)
    _check(att, PROMPT.split())
    assert att.empty_score.shape == att.score.shape


def test_bad_settings_are_refused_with_what_is_allowed(tiny_vit):
    with pytest.raises(ValueError, match="cosine, logit"):
        dv.token_attribution(tiny_vit, make_image(0), "a house", score="softmax")
    with pytest.raises(ValueError, match="steps"):
        dv.token_attribution(tiny_vit, make_image(0), "a house", steps=0)


def test_the_report_shades_each_word_by_its_share():
    html = sr.prompt_shading(["a", "red", "car"], [0.01, -0.04, 0.02])
    spans = html.split("<span")[1:]
    assert len(spans) == 3 and ">red</span>" in spans[1] and 'title="-0.0400"' in spans[1]
    assert "rgba(46,134,193,1.00)" in spans[1]            # the strongest word (lowers the score): full blue
    assert "rgba(209,73,91,0.50)" in spans[2]             # half as strong, raises it: half red
    assert 'href="#g-word-share"' in html and "word share" in sr.GLOSSARY
    assert ",0.00)" in sr.prompt_shading(["a"], [float("nan")])  # a word without a share is left unshaded


def test_the_explain_report_shows_each_prompt_with_its_words_shaded(tmp_path, tiny_dirs):
    from PIL import Image

    from decomviz.apps.cli import main
    path = tmp_path / "scene.png"
    Image.fromarray(make_image(0)).save(path)
    out = tmp_path / "report.html"
    assert main(["explain", str(path), "--prompt", "a red circle", "--checkpoint", str(tiny_dirs["vit"]),
                 "--method", "legrad", "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count("<span title=") == 3 and ">circle</span>" in page and 'id="g-word-share"' in page


def test_prompts_in_one_pass_or_one_by_one_give_the_same_shares(tiny_rn, monkeypatch):
    import decomviz.methods.tokens as tokens
    prompts = [PROMPT, "a blue square", "a house"]
    together = dv.token_attribution(tiny_rn, make_image(5), prompts, steps=8)
    monkeypatch.setattr(tokens, "PATH_BATCH", 1)  # at least one prompt's path a pass: one prompt at a time
    alone = dv.token_attribution(tiny_rn, make_image(5), prompts, steps=8)
    assert together.tokens == alone.tokens
    torch.testing.assert_close(together.shares, alone.shares, rtol=1e-4, atol=1e-6, equal_nan=True)
    torch.testing.assert_close(together.score, alone.score, rtol=1e-5, atol=1e-6)
