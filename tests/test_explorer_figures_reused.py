"""The Explorer draws every run into the same figure widgets: a new plotly FigureWidget ships plotly.js (~5 MB) to
the page, which made maps appear seconds after the Explorer said the run was done."""
import numpy as np
import plotly.graph_objects as go

from decomviz.widgets._common import replace_figure
from decomviz.widgets.explorer import Explorer
from plotly.subplots import make_subplots


def test_replace_figure_swaps_traces_and_layout_and_drops_stale_keys():
    many = make_subplots(rows=1, cols=3)
    many.add_trace(go.Bar(y=[1]), 1, 3)
    many.update_layout(height=300, title="many")
    one = go.Figure(go.Scatter(y=[1, 2]), layout=dict(width=500, title="one"))
    w = go.FigureWidget(many)
    for fig in (one, many, one):
        replace_figure(w, fig)
    keys = [k for k in w.layout.to_plotly_json() if k != "template"]
    assert w.layout.title.text == "one" and w.layout.height is None and sorted(keys) == ["title", "width"]
    assert [tr.type for tr in w.data] == ["scatter"]
    # a view made later (the widget put on a page after the edit) starts from the synced state: the new figure
    assert [d["type"] for d in w._widget_data] == ["scatter"] and w._widget_layout["title"]["text"] == "one"


def test_runs_and_prompt_switches_reuse_the_explorers_figure_widgets(tiny_rn):
    ex = Explorer(tiny_rn, n_scenes=2)
    pool = list(ex._figure_pool)
    ex.set_prompts("a house\na car")
    ex.set_knobs(n_components=3, top_channels=32)
    assert ex.run(wait=True) is not None, ex.status_text
    first = [id(w) for w in ex.figures]
    assert set(first) <= {id(w) for w in pool}
    title0 = ex.figures[0].layout.title.text
    ex.show_prompt(1)
    assert [id(w) for w in ex.figures] == first and ex.figures[0].layout.title.text != title0
    ex.set_compare(["gradcam"])
    assert ex.run(wait=True) is not None, ex.status_text
    assert len(ex.figures) == 3 and {id(w) for w in ex.figures} <= {id(w) for w in pool}
    assert sum(isinstance(tr, go.Heatmap) for tr in ex.figures[-1].data) == 2
    sal = next(tr for tr in ex.figures[0].data if tr.name == "saliency")
    assert np.isfinite(np.asarray(sal.z, float)).all()


def _plain(fig):
    j = fig.to_plotly_json()
    for tr in j["data"]:
        tr.pop("uid", None)
    j["layout"].pop("template", None)
    return j


def test_a_figure_of_the_same_structure_is_sent_as_its_differences_in_one_update():
    from decomviz.viz.clusters import exemplar_grid_figure
    from decomviz.widgets._common import _equal
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(6)]
    heats = [rng.random((32, 32)) for _ in range(6)]
    first = exemplar_grid_figure(imgs[:3], heats[:3], ["a", "b", "c"], n_slots=4, cols=4, title="one", color="#d55e00")
    second = exemplar_grid_figure(imgs[3:], heats[3:], ["d", "e", "f"], n_slots=4, cols=4, title="two",
                                  color="#0072b2")
    w = go.FigureWidget(first)
    sent = {"update": 0, "addTraces": 0, "relayout": 0, "restyle": 0}
    for name in sent:
        w.observe(lambda c, n=name: sent.__setitem__(n, sent[n] + (c["new"] is not None)), names=f"_py2js_{name}")
    replace_figure(w, second)
    assert _equal(_plain(w), _plain(second))
    assert sent == {"update": 1, "addTraces": 0, "relayout": 0, "restyle": 0}  # one message, no trace re-made
    assert w.data[3].source == first.data[3].source  # the blank slot was not sent again
    assert w._widget_layout["title"]["text"] == "two"  # a view made later starts from the new figure
    # a figure of another structure still replaces everything
    replace_figure(w, exemplar_grid_figure(imgs[:2], heats[:2], ["g", "h"], n_slots=2, cols=2, title="three"))
    assert len(w.data) == 2 and w.layout.title.text == "three" and sent["addTraces"] == 1


def test_a_grid_given_as_plotly_json_draws_as_its_figure_and_is_sent_as_differences():
    from decomviz.viz.clusters import exemplar_grid_figure, exemplar_grid_spec
    from decomviz.widgets._common import _equal
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (40, 30, 3), dtype=np.uint8) for _ in range(5)]
    heats = [rng.random((40, 30)) for _ in range(5)]
    metas = [{"row": i} for i in range(5)]
    spec = exemplar_grid_spec(imgs[:3], heats[:3], ["a", "b<br>x", "c"], n_slots=4, cols=2, title="one",
                              color="#d55e00", metas=metas[:3])
    fig = exemplar_grid_figure(imgs[:3], heats[:3], ["a", "b<br>x", "c"], n_slots=4, cols=2, title="one",
                               color="#d55e00", metas=metas[:3])
    assert _equal(_plain(go.Figure(spec)), _plain(fig))  # the JSON is the figure, plotly's validation passes it
    assert [a["text"] for a in spec["layout"]["annotations"]] == ["a", "b<br>x", "c", ""]  # a blank slot's too
    assert [tr["name"] for tr in spec["data"]] == ["exemplar 0", "exemplar 1", "exemplar 2", "empty"]
    assert [tr["xaxis"] for tr in spec["data"]] == ["x", "x2", "x3", "x4"] and len(spec["layout"]["shapes"]) == 3
    assert fig.layout.xaxis2.domain[0] > fig.layout.xaxis.domain[1]  # two columns side by side
    assert fig.layout.width > 0 and fig.layout.title.text == "one"

    w = go.FigureWidget(fig)
    sent = {"update": 0, "addTraces": 0}
    for name in sent:
        w.observe(lambda c, n=name: sent.__setitem__(n, sent[n] + (c["new"] is not None)), names=f"_py2js_{name}")
    second = exemplar_grid_spec(imgs[2:], heats[2:], ["d", "e", "f"], n_slots=4, cols=2, title="two",
                                color="#0072b2", metas=metas[2:])
    replace_figure(w, second)
    assert sent == {"update": 1, "addTraces": 0}
    assert _equal(_plain(w), _plain(go.Figure(second)))
    # JSON of another structure is made a figure and replaces everything
    replace_figure(w, exemplar_grid_spec(imgs[:1], heats[:1], ["g"], n_slots=1, cols=1, title="three"))
    assert len(w.data) == 1 and w.layout.title.text == "three" and sent["addTraces"] == 1
    assert w.layout.template.layout.font is not None  # plotly's template, as for a figure


def test_a_new_structure_is_laid_out_before_its_traces_arrive():
    """A page adds a trace on an axis it has not laid out yet to a default axis over the whole figure, and keeps it
    there: a PartInspector image with more prompts than the one before was drawn garbled in Voila. The layout must
    reach the page before the traces, and image grids say that their y axes run downwards."""
    from decomviz.viz.clusters import exemplar_grid_figure
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(6)]
    heats = [rng.random((32, 32)) for _ in range(6)]
    w = go.FigureWidget(exemplar_grid_figure(imgs[:2], heats[:2], ["a", "b"], n_slots=2, cols=2, title="one"))
    sent = []
    for name in ("relayout", "addTraces", "deleteTraces", "update", "restyle"):
        w.observe(lambda c, n=name: sent.append(n) if c["new"] is not None else None, names=f"_py2js_{name}")
    replace_figure(w, exemplar_grid_figure(imgs, heats, list("abcdef"), n_slots=6, cols=3, title="two"))
    assert sent == ["deleteTraces", "relayout", "addTraces"]
    assert len(w.data) == 6 and w.layout.xaxis6.domain is not None
    assert {w.layout[f"yaxis{'' if k == 1 else k}"].autorange for k in range(1, 7)} == {"reversed"}
