"""decomviz's FigureWidget: plotly's module travels once per kernel (on a carrier), not once per figure."""
import json

import plotly.graph_objects as go
import pytest

from decomviz.widgets import figure_widget as fw


@pytest.fixture(autouse=True)
def no_carrier():
    """Each test starts as a kernel without figures would: the figures of other tests are forgotten here (not
    closed: their widgets may still be in use)."""
    saved = fw.FigureWidget._live, fw.FigureWidget._carrier
    fw.FigureWidget._live, fw.FigureWidget._carrier = [], None
    yield
    fw.FigureWidget._live, fw.FigureWidget._carrier = saved


def _sent(widget) -> int:
    """Bytes of the state a page receives when the figure opens."""
    return len(json.dumps(widget.get_state(), default=str))


def test_first_figure_carries_plotly_module_others_send_a_loader():
    a = fw.FigureWidget(go.Figure(go.Scatter(y=[1, 2, 3])))
    b = fw.FigureWidget(go.Figure(go.Bar(y=[3, 1])))
    assert isinstance(a, go.FigureWidget) and isinstance(b, go.FigureWidget)
    assert fw.carrier() is a
    assert a._plotly_module == fw.plotly_module() and "export" in a._plotly_module
    assert len(a._plotly_module) > 1_000_000  # plotly.js with the widget
    assert b._plotly_module == ""
    assert _sent(b) < 20_000 < 1_000_000 < _sent(a)
    # plotly's own FigureWidget sends the whole module with every figure
    assert _sent(go.FigureWidget(go.Figure(go.Bar(y=[3, 1])))) > 1_000_000
    # the loader waits for the one import of plotly's module, keyed by plotly's version
    assert "_plotly_module" in b._esm and "Symbol.for" in b._esm
    assert b.data[0].type == "bar" and list(b.data[0].y) == [3, 1]


def test_closing_the_carrier_hands_the_module_to_a_live_figure():
    a, b, c = fw.FigureWidget(), fw.FigureWidget(), fw.FigureWidget()
    b.close()
    assert fw.carrier() is a and c._plotly_module == ""
    a.close()
    assert fw.carrier() is c and c._plotly_module == fw.plotly_module()
    c.close()
    assert fw.carrier() is None
    d = fw.FigureWidget()
    assert fw.carrier() is d and d._plotly_module == fw.plotly_module()


def test_figures_of_the_widgets_use_the_shared_module():
    from decomviz.widgets.figure_widget import FigureWidget
    from decomviz.widgets import clusters, concepts, explorer, scrubber, stepthrough
    for module in (clusters, concepts, explorer, scrubber, stepthrough):
        assert module.FigureWidget is FigureWidget, module.__name__
