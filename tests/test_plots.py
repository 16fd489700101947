"""Tests for saliency_helpers.plots: the JSON budget, colour schemes, layout and PNG export."""

import base64
import io

import altair as alt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from saliency_helpers import plots


def _panels(chart):
    """The facet's rows (one per panel), its inner spec and the colour bar, from the dict."""
    spec = chart.to_dict()
    facet, legend = spec["vconcat"]
    rows = spec["datasets"][facet["data"]["name"]]
    return rows, facet, legend


def _urls(row):
    return [row[k] for k in ("under", "url") if k in row]


def _decode(url):
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def _colour_scale(legend):
    return legend["encoding"]["color"]["scale"]


@pytest.fixture
def six_maps():
    gen = torch.Generator().manual_seed(0)
    return {f"method {i}": torch.randn(1, 3, 224, 224, generator=gen) for i in range(6)}


def test_six_maps_stay_within_one_megabyte(six_maps):
    chart = plots.heatmaps(six_maps)
    size = plots.chart_size_bytes(chart)
    print(f"six 224x224 maps: {size:,} bytes of JSON")
    assert size <= 1_000_000
    rows, facet, _ = _panels(chart)
    assert [r["panel"] for r in rows] == list(six_maps)  # one facet row per map, in order
    assert facet["spec"]["mark"]["type"] == "image"
    assert facet["facet"]["field"] == "panel" and facet["columns"] == 4
    assert all(r["url"].startswith("data:image/png;base64,") for r in rows)


def test_signed_maps_get_the_diverging_scheme():
    signed = plots.heatmaps({"a": torch.randn(8, 8)})
    magnitude = plots.heatmaps({"a": torch.rand(8, 8)})
    forced = plots.heatmaps({"a": torch.randn(8, 8)}, signed=False)
    assert _colour_scale(_panels(signed)[2])["range"] == plots.DIVERGING
    assert _colour_scale(_panels(magnitude)[2])["range"] == plots.SEQUENTIAL
    assert _colour_scale(_panels(forced)[2])["range"] == plots.SEQUENTIAL
    domain = _colour_scale(_panels(signed)[2])["domain"]
    assert domain[0] == pytest.approx(-domain[-1])  # symmetric about zero


def test_shared_versus_independent_scale():
    m = torch.randn(16, 16, generator=torch.Generator().manual_seed(1))
    pair = {"small": m, "large": 10 * m}
    rows, _, legend = _panels(plots.heatmaps(pair, clip=None))
    small, large = (r["url"] for r in rows)
    assert small != large  # on one scale the small map is paler
    assert _colour_scale(legend)["domain"][-1] == pytest.approx(10 * m.abs().max().item())

    rows, _, legend = _panels(plots.heatmaps(pair, clip=None, shared_scale=False))
    small, large = (r["url"] for r in rows)
    assert small == large  # each scaled to its own range: the same picture
    assert _colour_scale(legend)["domain"][0] == -1 and _colour_scale(legend)["domain"][-1] == 1
    assert legend["encoding"]["x"]["title"] == "normalised per panel"


def test_photo_comes_first_and_non_square_maps_keep_aspect():
    photo = torch.rand(3, 100, 200)
    chart = plots.heatmaps({"a": torch.rand(100, 200)}, photo=photo, size=180)
    rows, facet, _ = _panels(chart)
    assert [r["panel"] for r in rows] == ["photo", "a"]
    assert rows[0]["url"].startswith("data:image/jpeg;base64,")
    assert (facet["spec"]["width"], facet["spec"]["height"]) == (180, 90)
    assert facet["spec"]["mark"]["aspect"] is True


def test_overlay_draws_translucent_maps_over_the_photo():
    photo = Image.new("RGB", (32, 32), (200, 120, 40))
    chart = plots.heatmaps(
        {"a": torch.randn(32, 32), "b": torch.randn(32, 32)}, photo=photo, overlay=True
    )
    rows, facet, _ = _panels(chart)
    assert len(rows) == 2 and len(facet["spec"]["layer"]) == 2
    under, over = _urls(rows[0])
    assert under.startswith("data:image/jpeg")
    alpha = np.asarray(_decode(over).convert("RGBA"))[..., 3]
    assert alpha.min() < 40 and 0 < alpha.max() < 255


def test_row_column_keys_make_a_grid():
    gen = torch.Generator().manual_seed(2)
    maps = {(m, s): torch.rand(20, 20, generator=gen) for m in ("grad", "ig") for s in ("0", "1")}
    rows, facet, _ = _panels(plots.heatmaps(maps, size=64))
    assert facet["facet"]["row"]["field"] == "panel"
    assert facet["facet"]["column"]["field"] == "column"
    assert facet["facet"]["column"]["sort"] == ["0", "1"]
    assert [(r["panel"], r["column"]) for r in rows] == list(maps)


def test_cells_are_rectangles_with_value_tooltips():
    m = torch.arange(64.0).reshape(8, 8) - 20
    chart = plots.heatmaps({"a": m, "b": -m}, cells=4)
    rows, facet, legend = _panels(chart)
    assert facet["spec"]["mark"]["type"] == "rect"
    assert len(rows) == 2 * 16
    tips = [t["field"] for t in facet["spec"]["encoding"]["tooltip"]]
    assert tips == ["panel", "row", "col", "value"]
    # a cell's value is the average of the pixels it pools (top-left 2x2 of m)
    first = next(r for r in rows if r["panel"] == "a" and r["row"] == 0 and r["col"] == 0)
    assert first["value"] == pytest.approx(float(m[:2, :2].mean()))
    # the cells share the bar's colours
    assert facet["spec"]["encoding"]["color"]["scale"]["range"] == _colour_scale(legend)["range"]
    assert plots.chart_size_bytes(plots.heatmaps({"a": torch.randn(224, 224)}, cells=56)) < 10**6


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="photo"):
        plots.heatmaps({"a": torch.rand(8, 8)}, overlay=True)
    with pytest.raises(ValueError, match="denormalize"):
        plots.heatmaps({"a": torch.rand(8, 8)}, photo=torch.randn(3, 8, 8) * 3)
    with pytest.raises(ValueError, match="overlay the model input"):
        plots.heatmaps({"a": torch.rand(8, 8)}, photo=torch.rand(3, 8, 16), overlay=True)
    with pytest.raises(ValueError, match=r"attributions\[i\]"):
        plots.heatmaps({"a": torch.rand(2, 3, 8, 8)})
    with pytest.raises(ValueError, match="empty"):
        plots.heatmaps({})
    with pytest.raises(ValueError, match="not a mix"):
        plots.heatmaps({"a": torch.rand(8, 8), ("b", "c"): torch.rand(8, 8)})
    with pytest.raises(ValueError, match="use cells=44"):
        plots.heatmaps({k: torch.rand(64, 64) for k in "abcdef"}, cells=64)
    with pytest.raises(ValueError, match="leave out photo"):
        plots.heatmaps({"a": torch.rand(8, 8)}, cells=4, photo=torch.rand(3, 8, 8))


def test_save_png_renders_the_images(six_maps, tmp_path):
    chart = plots.heatmaps(six_maps, photo=torch.rand(3, 224, 224), columns=4, size=180)
    path = plots.save_png(chart, tmp_path / "new" / "maps.png", scale=1)
    assert path.exists()
    image = np.asarray(Image.open(path).convert("RGB"))
    height, width, _ = image.shape
    assert 4 * 180 <= width <= 4 * 180 + 300  # four panels a row plus gaps
    assert 2 * 180 <= height <= 2 * 180 + 300  # two rows plus titles and the colour bar
    assert image.std() > 10
    # The middle of the second panel (first map) is noise, not blank paper.
    assert image[100:200, 300:400].std() > 10


def test_similarity_lines_keeps_stage_order(tmp_path):
    stages = ["logits", "layer4", "conv1"]  # not alphabetical
    df = pd.DataFrame(
        [
            (m, s, k, v)
            for m in ("gradient", "grad_cam")
            for k in ("spearman", "ssim")
            for s, v in zip(stages, (1.0, 0.5, 0.1), strict=True)
        ],
        columns=["method", "stage", "metric", "value"],
    )
    chart = plots.similarity_lines(df, title="cascade")
    spec = chart.to_dict()
    assert spec["spec"]["encoding"]["x"]["sort"] == stages
    assert spec["facet"]["field"] == "metric"
    image = np.asarray(Image.open(plots.save_png(chart, tmp_path / "lines.png")))
    assert image.std() > 0
    with pytest.raises(ValueError, match="layer"):
        plots.similarity_lines(df, x="layer")


def test_plots_leave_altair_settings_alone(six_maps):
    before = (alt.data_transformers.active, dict(alt.data_transformers.options))
    plots.heatmaps(six_maps)
    assert (alt.data_transformers.active, dict(alt.data_transformers.options)) == before
