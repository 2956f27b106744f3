"""`decomviz bench --quick` runs end to end on every bundled model and writes its JSON and markdown tables."""
import json
import math

import pytest

from decomviz.apps.cli import main
from decomviz.methods.registry import METHODS
from decomviz.models import BUNDLED

pytestmark = pytest.mark.filterwarnings("ignore")


def test_bench_quick(tmp_path, capsys):
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["models"]) == set(BUNDLED)                      # every bundled model, parts-rn-dense included
    attention = {"legrad", "grad-eclip", "chefer", "rollout"}     # the methods made for transformers: ViT only
    assert set(res["models"]["parts-vit"]["localisation"]) == set(res["models"]["parts-rn"]["localisation"]) | attention
    entry = res["models"]["parts-rn"]
    methods = set(METHODS) - attention                              # every other registered method has a row
    assert set(entry["localisation"]) == methods and "occlusion" in methods
    for row in entry["localisation"].values():
        assert 0 <= row["pointing_game"] <= 1 and 0 <= row["energy_pointing_game"] <= 1
        assert row["pairs"] > 0 and row["seconds_per_pair"] > 0
        assert 0 < row["faithfulness_pairs"] <= row["pairs"] and 0 <= row["empty_maps"] <= row["pairs"]
        assert all(map(math.isfinite, (row["insertion_auc"], row["deletion_auc"], row["average_drop"])))
    assert set(entry["part_alignment"]) == {"object prompts", "part prompts"}
    assert {"default", "sign=both", "integration=feature", "center=False"} <= set(entry["ablations"])
    assert entry["speed"]["floor"] > 0 and entry["speed"]["decomcam_over_floor"] > 0
    agree = entry["integration_agreement"]
    assert agree["pairs"] > 0 and 0 <= agree["same_top_component"] <= 1 and -1 <= agree["map_correlation"] <= 1
    assert {"default", "authors", "blend=max"} <= set(res["models"]["parts-vit"]["ablations"])
    assert set(entry["softmax_localisation"]) == methods
    assert all(0 <= r["pointing_game"] <= 1 for r in entry["softmax_localisation"].values())
    sanity = entry["sanity"]["gradcam"]
    assert len(sanity["spearman"]) == len(sanity["blocks"]) == 2 and sanity["blocks"][0] == "visual.attnpool"
    parts = entry["parts"]
    assert 0 <= parts["model"]["attribute_binding"] <= 1 and set(parts["maps"]) == methods
    assert parts["model"]["binding_pairs"] > 0 and parts["model"]["part_use_pairs"] > 0
    assert 0 <= parts["model"]["binding_smallest_part"] <= 1
    assert all(0 <= r["target_sensitivity"] <= 1 for r in parts["maps"].values())
    md = (tmp_path / "results.md").read_text()
    assert "| decomcam |" in md and "### parts-rn" in md and "### parts-vit" in md
    assert "pointing, softmax over the scene's prompts" in md and "Attribute binding" in md
    assert "on each object's largest part" in md
    assert "| decomcam |" in capsys.readouterr().out


def test_bench_reruns_a_section_in_place(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="decomviz bench --out"):
        main(["bench", "--sections", "speed", "--out", str(tmp_path)])
    assert main(["bench", "--quick", "--models", "parts-rn", "--out", str(tmp_path)]) == 0
    before = json.loads((tmp_path / "results.json").read_text())
    assert main(["bench", "--sections", "integration_agreement", "--out", str(tmp_path)]) == 0
    after = json.loads((tmp_path / "results.json").read_text())
    assert after["reruns"][0]["sections"] == ["integration_agreement"] and after["reruns"][0]["models"] == ["parts-rn"]
    assert after["models"]["parts-rn"]["localisation"] == before["models"]["parts-rn"]["localisation"]  # kept
    assert after["config"] == before["config"] and "feature vs pixel" in (tmp_path / "results.md").read_text()
    with pytest.raises(SystemExit):                                    # a rerun keeps the recorded settings
        main(["bench", "--sections", "speed", "--quick", "--out", str(tmp_path)])
    assert "drop --quick" in capsys.readouterr().err
    # a model the run did not have gets only the rerun section, and the tables still render
    results = json.loads((tmp_path / "results.json").read_text())
    agree = results["models"]["parts-rn"]["integration_agreement"]
    results["models"]["parts-rn-copy"] = {"layer": "visual.layer4", "integration_agreement": agree}
    from decomviz.apps.bench import to_markdown
    assert "### parts-rn-copy" in to_markdown(results)


def test_bench_takes_a_trained_folder_by_its_path(tmp_path):
    from decomviz.models import ASSETS
    folder = str(ASSETS / "parts-rn")                # a folder as `decomviz train` writes it
    assert main(["bench", "--quick", "--models", folder, "--only", "sanity", "--set", "sanity_steps=1",
                 "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    import decomviz as dv
    assert list(res["models"]) == [folder] and res["models"][folder]["layer"] == dv.load_model("parts-rn").default_layer


def test_bench_runs_only_some_sections_with_changed_sizes(tmp_path, capsys):
    assert main(["bench", "--quick", "--models", "parts-rn", "--only", "sanity", "--set", "sanity_steps=1",
                 "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["models"]["parts-rn"]) == {"layer", "sanity"} and res["config"]["sanity_steps"] == 1
    assert all(len(r["spearman"]) == 1 for r in res["models"]["parts-rn"]["sanity"].values())
    with pytest.raises(ValueError, match="Unknown bench setting"):
        main(["bench", "--quick", "--only", "sanity", "--set", "nope=1", "--out", str(tmp_path)])


def test_benchmarks_md_is_made_from_the_results_and_tells_no_history():
    """BENCHMARKS.md is generated from benchmarks/results/*.json: a figure added without regenerating fails here.
    It holds current figures only: no /tmp paths, no story of which sitting made a figure."""
    import re
    from pathlib import Path

    from decomviz.apps.bench.reference import benchmarks_markdown, load_sections
    page = (Path(__file__).resolve().parents[1] / "BENCHMARKS.md").read_text()
    assert page == benchmarks_markdown(), "run: python -m decomviz.apps.bench.reference"
    assert "/tmp/" not in page and not re.search(r"(?i)\bsession\b|\bissue \d+", page)
    sections = load_sections()
    assert len(sections) >= 7 and all(re.fullmatch(r"\d{4}-\d\d-\d\d", s["date"]) for s in sections)
