"""`dv.Extractor` (a batch of images -> a table in `dv.bank_schema()`, failures as error
rows) and the lazy `OSSMBank` (projection, filters, batches, take; any Parquet folder in the bank schema)."""
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from PIL import Image

import decomviz as dv
from decomviz.analysis.shards import BankError
from tests.conftest import make_image

pytestmark = pytest.mark.filterwarnings("ignore:No component raised")


@pytest.fixture(scope="module")
def bank(tiny_rn, tmp_path_factory):
    world = dv.PartsWorld(8, seed=3, n_objects=(1, 2), size=128)
    return dv.extract(dv.DecomCAM(tiny_rn, n_components=3, top_channels=32), world, "a photo of a {}",
                      out=tmp_path_factory.mktemp("lazy") / "bank", shard_size=3, progress=False)


def test_bank_schema_carries_the_protocol():
    schema = dv.bank_schema({"method": "decomcam", "n_components": 4}, ["car/wheels"], prompts="a photo of a {}")
    meta = json.loads(schema.metadata[b"decomviz"])
    assert meta["format"] == 3 and meta["protocol"]["n_components"] == 4 and meta["part_vocabulary"] == ["car/wheels"]
    assert schema.field("ossm").type == pa.list_(pa.float32()) and schema.field("error").type == pa.string()
    assert {"image_index", "image_id", "grid_h", "grid_w", "weight"} <= set(schema.names)


def test_projection_reads_the_columns_asked_for(bank):
    df = bank.to_pandas(columns=["image_id", "weight"])
    assert list(df.columns) == ["image_id", "weight"] and len(df) == len(bank)
    full = bank.to_pandas()
    assert list(full.columns)[:3] == ["image_index", "image_id", "labels"] and full.index.equals(df.index)
    with pytest.raises(ValueError, match="Unknown bank column.*'colour'"):
        bank.to_pandas(columns=["colour"])


def test_iteration_in_batches_covers_every_row_once(bank):
    seen, sizes = [], []
    for batch in bank.iter_batches(columns=["image_id", "ossm"], batch_size=4, with_rows=True):
        assert batch.schema.names == ["bank_row", "image_id", "ossm"] and batch.num_rows <= 4
        seen += batch.column("bank_row").to_pylist()
        sizes.append(batch.num_rows)
    assert seen == list(range(len(bank))) and len(sizes) > len(bank.shards)
    flat = np.concatenate([np.asarray(b.column(0).to_pylist(), np.float32) for b in bank.iter_batches(["ossm"])])
    assert np.allclose(flat.reshape(bank.ossms.shape), bank.ossms)


def test_filters_by_label_value_and_expression(bank):
    df = bank.to_pandas()
    label = df.labels.iloc[0].split("|")[0]
    view = bank.filter(label=label)
    expected = df[df.labels.str.split("|").apply(lambda ls: label in ls)]
    assert len(view) == len(expected) and 0 < len(view) < len(bank)
    got = view.to_pandas()
    assert got.reset_index(drop=True).equals(expected.reset_index(drop=True))
    # the view's rows are numbered 0..len-1 and its vectors are those of the same components
    assert np.allclose(view.vectors("embedding"), bank.embeddings[expected.index.to_numpy()])
    assert np.allclose(view.ossms_of([len(view) - 1, 0]), bank.ossms[expected.index.to_numpy()[[-1, 0]]])
    strong = bank.filter(ds.field("weight") > 0.5, component=[0, 1])
    assert len(strong) == int(((df.weight > 0.5) & df.component.isin([0, 1])).sum())
    both = view.filter(component=0)
    assert len(both) == int((expected.component == 0).sum()) and set(both.to_pandas().component) == {0}
    with pytest.raises(ValueError, match="Cannot filter on 'colour'"):
        bank.filter(colour="red")


def test_take_reads_given_rows_in_the_given_order(bank):
    rows = [len(bank) - 1, 0, 5, 5]
    table = bank.take(rows, ["image_id", "component", "embedding"])
    df = bank.to_pandas()
    assert table.column("image_id").to_pylist() == df.image_id.iloc[rows].tolist()
    assert np.allclose(bank.vectors("embedding", rows), bank.embeddings[rows])
    with pytest.raises(IndexError, match="out of range"):
        bank.take([len(bank)])


def test_checksums_are_verified_once_per_shard_on_first_read(bank, tmp_path, monkeypatch):
    from decomviz.analysis import shards
    out = tmp_path / "copy"
    shutil.copytree(bank.path, out)
    hashed = []
    real = shards.sha256_file
    monkeypatch.setattr(shards, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    copy = dv.OSSMBank(out)
    assert len(copy) == len(bank) and hashed == []  # opening and counting read no shard
    copy.take([0], ["weight"])
    assert hashed == ["shard-00000.parquet"]
    copy.to_pandas(["weight"])
    copy.vectors("ossm")
    assert sorted(hashed) == sorted(s["file"] for s in bank.shards)


def test_extractor_maps_batches_of_any_convention(tiny_rn, tmp_path):
    paths = []
    for s in range(2):
        paths.append(tmp_path / f"{s}.png")
        Image.fromarray(make_image(s)).save(paths[-1])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    ex = dv.Extractor(tiny_rn, "a photo of a {}", n_components=2, top_channels=16)
    batch = {"path": [str(p) for p in paths] + [str(tmp_path / "broken.png")], "id": ["a", "b", "c"],
             "labels": ["cat", "cat|dog", "dog"], "index": np.array([10, 11, 12])}
    table = ex(batch)
    assert isinstance(table, pa.Table) and table.schema.equals(ex.schema, check_metadata=True)
    df = table.to_pandas()
    ok, bad = df[df.error.isna()], df[df.error.notna()]
    assert list(bad.image_id) == ["c"] and "not an image" in bad.error.iloc[0] and bad.component.isna().all()
    assert len(ok) == (1 + 2) * 2 and list(ok.image_index.unique()) == [10, 11]
    assert list(df.image_index) == sorted(df.image_index)  # rows in the batch's order of images
    assert (ok.grid_h * ok.grid_w == ok.ossm.apply(len)).all()
    # the same rows from a pyarrow Table or a pandas DataFrame, and from images instead of paths
    for other in (pa.table({k: list(v) for k, v in batch.items()}), pd.DataFrame(batch)):
        assert ex(other).to_pandas().drop(columns=["ossm", "embedding", "pooled", "loading", "part_overlap"]).equals(
            df.drop(columns=["ossm", "embedding", "pooled", "loading", "part_overlap"]))
    arrays = ex({"image": [make_image(0)], "id": ["a"], "labels": [["cat"]], "index": [10]}).to_pandas()
    files = ex({"path": [str(paths[0])], "id": ["a"], "labels": ["cat"], "index": [10]}).to_pandas()
    assert len(arrays) == 2 and np.allclose(arrays.weight, files.weight, atol=1e-6)
    with pytest.raises(ValueError, match="'image' or 'path' column"):
        ex({"id": ["a"]})


def test_an_image_that_fails_in_the_engine_becomes_an_error_row(tiny_rn, monkeypatch):
    ex = dv.Extractor(tiny_rn, ["a shape"], n_components=2, top_channels=16)
    real = type(ex.cam).__call__

    def flaky(self, images, prompts):
        if any(np.asarray(im).mean() > 250 for im in images):
            raise RuntimeError("the engine choked")
        return real(self, images, prompts)
    monkeypatch.setattr(type(ex.cam), "__call__", flaky)
    white = np.full((64, 64, 3), 255, np.uint8)
    df = ex({"image": [make_image(0), white, make_image(1)], "id": ["a", "white", "b"]}).to_pandas()
    assert df[df.error.notna()].image_id.tolist() == ["white"]
    assert "RuntimeError: the engine choked" in df.error.dropna().iloc[0]
    assert df[df.error.isna()].image_id.unique().tolist() == ["a", "b"]


def test_a_folder_of_parquet_written_by_the_extractor_opens_without_manifest(tiny_rn, tmp_path):
    ex = dv.Extractor(tiny_rn, "a photo of a {}", dataset=dv.PartsWorld(5, seed=2, size=128), n_components=2,
                      top_channels=16)
    out = tmp_path / "by-hand"
    out.mkdir()
    pq.write_table(ex({"index": [0, 1, 2]}), out / "a.parquet")
    bad = ex({"path": [str(tmp_path / "missing.png")], "id": ["gone"], "index": [3]})
    pq.write_table(pa.concat_tables([ex({"index": [4]}), bad]), out / "b.parquet")
    bank = dv.OSSMBank(out)
    assert bank.manifest is None and bank.complete is None and bank.verify() == []
    assert bank.n_images == 4 and [f["id"] for f in bank.failed] == ["gone"]
    assert bank.protocol["n_components"] == 2 and bank.part_vocabulary == ex.part_vocabulary
    assert bank.dataset["kind"] == "partsworld" and bank.grid == (4, 4)
    assert bank.ossms.shape == (len(bank), 4, 4) and bank.part_overlap.shape == (len(bank), len(ex.part_vocabulary))
    assert "gone" not in set(bank.to_pandas().image_id)
    (out / "c.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(BankError, match="c.parquet' is not readable Parquet"):
        dv.OSSMBank(out).to_pandas()
    assert [p.split(":")[0] for p in dv.OSSMBank(out).verify()] == ["c.parquet"]


def test_a_format_2_bank_still_reads(tmp_path):
    """Format 2: fixed-size vectors, the grid in the manifest only, no error column, no part_overlap column."""
    from decomviz.analysis.shards import sha256_file
    n = 4
    table = pa.table({"image_index": np.arange(n), "image_id": [f"i{i}" for i in range(n)], "labels": ["a"] * n,
                      "prompt": ["p"] * n, "prompt_index": [0] * n, "component": [0] * n, "weight": [0.5] * n,
                      "ossm": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(4 * n, dtype=np.float32)), 4),
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(3 * n, np.float32)), 3)})
    out = tmp_path / "old"
    out.mkdir()
    pq.write_table(table, out / "shard-00000.parquet")
    manifest = {"format": 2, "protocol": {"method": "decomcam"}, "part_vocabulary": [], "complete": True,
                "shards": {"00000": {"file": "shard-00000.parquet", "first": 0, "images": n, "rows": n,
                                     "failed": [], "grid": [2, 2], "sha256": sha256_file(out / "shard-00000.parquet"),
                                     "bytes": (out / "shard-00000.parquet").stat().st_size}}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    bank = dv.OSSMBank(out)
    assert len(bank) == n and bank.ossms.shape == (n, 2, 2) and bank.ossms[1, 0, 1] == 5
    assert bank.embeddings.shape == (n, 3) and bank.part_overlap.shape == (n, 0)
    assert bank.to_pandas(["grid_h", "error"]).grid_h.tolist() == [2] * n
    assert len(bank.filter(image_id=["i1", "i3"])) == 2


def test_cli_extracts_and_clusters_by_streaming(tiny_dirs, tmp_path, capsys):
    from decomviz.apps.cli import main
    out = tmp_path / "bank"
    assert main(["extract", "partsworld:4:1", "--checkpoint", str(tiny_dirs["rn"]), "--n-components", "3",
                 "--out", str(out)]) == 0
    assert main(["extract", "partsworld:4:1", "--checkpoint", str(tiny_dirs["rn"]), "--num-gpus", "1",
                 "--out", str(out)]) == 2
    assert "options of --engine ray" in capsys.readouterr().err
    code = main(["cluster", str(out), "--n-clusters", "2", "--streaming", "on", "--out", str(tmp_path / "c.html")])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "streamed" in printed and (tmp_path / "c.html").is_file()
    assert "named by its dominant ground-truth part" in printed
    table = printed.split("dominant part")[-1].split("NMI")[0]  # the part report's rows, after its header
    rows = [line.split() for line in table.strip().splitlines()[1:]]
    page = (tmp_path / "c.html").read_text()
    assert len(rows) == 2 and all(f"c{cluster} {part}" in page for cluster, _, part, _ in rows)
