import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import decomviz as dv
from decomviz.apps.cli import main
from tests.conftest import make_image


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(make_image(0)).save(path)
    return path


def test_explain_writes_a_compact_static_html_report(image_path, tmp_path, tiny_dirs, capsys):
    out = tmp_path / "report.html"
    rc = main(["explain", str(image_path), "--prompt", "a red circle", "--prompt", "a blue square",
               "--checkpoint", str(tiny_dirs["rn"]), "--n-components", "3", "--compare", "gradcam,eigencam",
               "--out", str(out)])
    assert rc == 0
    html = out.read_text()
    assert "<script" not in html and "http" not in html     # no code, nothing fetched: opens offline at once
    # per prompt: the input and 3 methods, then 3 components over the image; pictures are WebP, not numbers
    assert html.count("data:image/webp;base64,") == 2 * (4 + 3)
    assert html.count("<svg") == 2                           # one spectrum per prompt
    assert "a blue square" in html and 'id="g-weight-w"' in html   # terms link to the glossary
    assert out.stat().st_size < 400_000
    assert html.count("cosine score s(x, t) =") == 2         # the model's score given once per prompt
    err = capsys.readouterr().err
    assert "decomcam: 2 prompt(s)" in err and "wrote" in err


def test_explain_npz_roundtrip(image_path, tmp_path, tiny_dirs):
    out = tmp_path / "e.npz"
    assert main(["explain", str(image_path), "--prompt", "x", "--checkpoint", str(tiny_dirs["vit"]),
                 "--method", "gradcam", "--out", str(out)]) == 0
    exp = dv.Explanation.load(out)
    assert exp.method == "gradcam" and exp.saliency.shape == (1, 1, 64, 64)


@pytest.mark.parametrize("args,msg", [
    (["MISSING", "--prompt", "x"], "not found"),
    (["IMG", "--prompt", ""], "empty"),
    (["IMG", "--prompt", "x", "--layer", "visual.nope"], "Valid layers"),
    (["IMG", "--prompt", "x", "--n-components", "0"], "n_components"),
    (["IMG", "--prompt", "x", "--model", "RN5000"], "Unknown model"),
])
def test_explain_bad_input_exits_2_with_message(image_path, tmp_path, tiny_dirs, capsys, args, msg):
    args = [str(image_path) if a == "IMG" else str(tmp_path / "missing.png") if a == "MISSING" else a for a in args]
    extra = [] if "--model" in args else ["--checkpoint", str(tiny_dirs["rn"])]
    rc = main(["explain", *args, *extra, "--out", str(tmp_path / "r.html")])
    assert rc == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "decomviz.apps.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "explain" in out.stdout and "demo" in out.stdout


@pytest.mark.parametrize("kind", ["tiny", "corrupt", "rgba16"])
def test_explain_unusual_files(tmp_path, tiny_dirs, capsys, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "tiny":
        Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(path)
    elif kind == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    else:
        Image.fromarray(np.full((20, 30), 60000, np.uint16)).save(path)
    rc = main(["explain", str(path), "--prompt", "x", "--checkpoint", str(tiny_dirs["rn"]), "--method", "gradcam",
               "--out", str(tmp_path / "r.npz")])
    if kind == "corrupt":
        assert rc == 2 and "corrupt" in capsys.readouterr().err
    else:
        assert rc == 0 and dv.Explanation.load(tmp_path / "r.npz").saliency.shape == (1, 1, 128, 128)


def test_demo_writes_a_small_report_with_every_method_and_part_prompts(tmp_path, capsys):
    out = tmp_path / "demo.html"
    assert main(["demo", "--scenes", "1", "--out", str(out)]) == 0
    html = out.read_text()
    assert out.stat().st_size < 3_000_000 / 4               # 4 scenes (the default) stay under 3 MB
    assert "<script" not in html
    for label in ("DecomCAM", "Grad-CAM", "LayerCAM", "Occlusion (reference)", "ground truth: the",
                  "What each DecomCAM component adds", "removing the"):
        assert label in html, label
    assert "softmax" in capsys.readouterr().out


def test_demo_refuses_an_output_that_is_not_html(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo.png")]) == 2
    assert "must end in .html" in capsys.readouterr().err


def test_every_cli_option_has_help_and_shows_its_default():
    import argparse

    from decomviz.apps.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            shown = action.default not in (None, argparse.SUPPRESS, False) and \
                not isinstance(action, argparse._StoreTrueAction)
            if not action.help or (shown and "default" not in action.help):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help text or shown default: {missing}"


def test_cluster_refuses_an_output_that_is_not_html(tmp_path, capsys):
    assert main(["cluster", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "must end in .html" in capsys.readouterr().err


def test_explain_takes_several_images_and_folders_and_writes_png_overlays(tmp_path, tiny_dirs, capsys):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(make_image(0)).save(folder / "a.png")
    Image.fromarray(make_image(1, 90, 200)).save(folder / "sub" / "b.jpg")
    (folder / "notes.txt").write_text("not an image")
    single = tmp_path / "c.png"
    Image.fromarray(make_image(2)).save(single)
    out = tmp_path / "overlays"
    rc = main(["explain", str(folder), str(single), "--prompt", "a red circle", "--prompt", "a dog",
               "--checkpoint", str(tiny_dirs["rn"]), "--n-components", "3", "--compare", "", "--out", f"{out}/"])
    assert rc == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_a-dog.png", "a_a-red-circle.png", "b_a-dog.png", "b_a-red-circle.png", "c_a-dog.png",
                     "c_a-red-circle.png"]
    assert Image.open(out / "b_a-dog.png").size == (200, 90)        # the overlay lies over the photo as given
    assert "2 prompt(s) x 3 image(s)" in capsys.readouterr().err
    report = tmp_path / "r.html"                                     # the report holds every image too
    assert main(["explain", str(folder), "--prompt", "x", "--checkpoint", str(tiny_dirs["rn"]), "--n-components",
                 "3", "--compare", "", "--out", str(report)]) == 0
    assert "a.png: “x”" in report.read_text() and "b.jpg: “x”" in report.read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["explain", str(empty), "--prompt", "x", "--checkpoint", str(tiny_dirs["rn"]), "--out",
                 str(tmp_path / "e.npz")]) == 2
    assert "holds no image files" in capsys.readouterr().err


def test_warnings_print_as_one_plain_line(image_path, tmp_path, tiny_dirs, capsys):
    rc = main(["explain", str(image_path), "--prompt", "x", "--checkpoint", str(tiny_dirs["rn"]), "--compare", "",
               "--n-components", "400", "--out", str(tmp_path / "e.npz")])   # more components than the rank
    err = capsys.readouterr().err
    assert rc == 0
    lines = [line for line in err.splitlines() if "warning:" in line.lower()]
    assert lines and all(line.startswith(("decomviz: warning: ", "WARNING: ")) for line in lines), err
    assert "UserWarning" not in err and ".py:" not in err


def test_demo_refuses_models_that_do_not_know_partsworld(capsys):
    assert main(["demo", "--model", "RN50", "--out", "x.html"]) == 2
    assert "only the bundled models know" in capsys.readouterr().err


def test_explain_takes_braces_literally_and_extract_refuses_bad_templates(image_path, tmp_path, tiny_dirs, capsys):
    out = tmp_path / "e.npz"
    assert main(["explain", str(image_path), "--prompt", "a {} with {color}", "--checkpoint", str(tiny_dirs["rn"]),
                 "--method", "gradcam", "--out", str(out)]) == 0
    assert dv.Explanation.load(out).prompts == ["a {} with {color}"]
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    shutil.copy(image_path, tmp_path / "photos" / "cat" / "a.png")  # a label, so the template is filled
    rc = main(["extract", str(tmp_path / "photos"), "--prompt", "a {} with {color}", "--checkpoint",
               str(tiny_dirs["rn"]), "--out", str(tmp_path / "bank")])
    err = capsys.readouterr().err
    assert rc == 2 and "{color}" in err and "Traceback" not in err and "KeyError" not in err


def test_non_utf8_file_name_works(image_path, tmp_path, tiny_dirs):
    odd = tmp_path / os.fsdecode(b"sc\xffene.png")
    shutil.copy(image_path, odd)
    out = tmp_path / "report.html"
    assert main(["explain", str(odd), "--prompt", "x", "--checkpoint", str(tiny_dirs["rn"]), "--compare", "",
                 "--n-components", "2", "--out", str(out)]) == 0
    assert "sc\ufffdene.png" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("args,match", [
    (["--device", "tpu"], "Unknown device 'tpu'"),
    (["--out", "/nonexistent-folder/r.html"], "does not exist"),
])
def test_cli_errors_come_before_the_work_without_traceback(image_path, tiny_dirs, capsys, args, match):
    argv = ["explain", str(image_path), "--prompt", "x", "--checkpoint", str(tiny_dirs["rn"]),
            "--out", str(image_path.parent / "r.html"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and "[decomviz] decomcam" not in err
