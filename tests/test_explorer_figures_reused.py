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
