"""Command-line text that is not valid UTF-8 (a prompt typed in a Latin-1 terminal reaches Python as surrogate
escapes) is carried through with replacement characters: the report is written, and says what was explained."""
from PIL import Image

from decomviz.apps.cli import main

from .conftest import make_image


def test_a_latin1_prompt_gives_a_report_with_replacement_characters(tiny_dirs, tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(make_image(0)).save(image)
    out = tmp_path / "report.html"
    prompt = b"a caf\xe9".decode("utf-8", "surrogateescape")  # what Python makes of Latin-1 bytes in argv
    rc = main(["explain", str(image), "--prompt", prompt, "--checkpoint", str(tiny_dirs["rn"]), "--compare", "",
               "--n-components", "2", "--out", str(out)])
    assert rc == 0 and out.is_file()
    assert "a caf\ufffd" in out.read_text(encoding="utf-8")


def test_a_latin1_prompt_goes_into_a_bank_with_replacement_characters(tiny_dirs, tmp_path):
    import decomviz as dv
    prompt = b"a d\xe9tail".decode("utf-8", "surrogateescape")
    rc = main(["extract", "partsworld:2:1", "--prompt", prompt, "--checkpoint", str(tiny_dirs["rn"]),
               "--n-components", "2", "--out", str(tmp_path / "bank")])
    assert rc == 0
    assert set(dv.OSSMBank(tmp_path / "bank").to_pandas(["prompt"]).prompt) == {"a d\ufffdtail"}
