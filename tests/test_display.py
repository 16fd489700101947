"""The offline renderer: JupyterLab's built-in Vega-Lite 5 draws the course's charts exactly
as Vega-Lite 6 would, so relabelling Altair 6's specs as version 5 changes no pixel."""

import io

import altair as alt
import numpy as np
import pandas as pd
import pytest
import torch
import vl_convert
from PIL import Image

import saliency_helpers as sh
from saliency_helpers import display, plots, sanity

# The oldest Vega-Lite 5 that vl-convert ships; JupyterLab 4 bundles a 5.x release.
OLD = "5.8"


def _pixels(spec: dict, vl_version: str | None) -> np.ndarray:
    png = vl_convert.vegalite_to_png(spec, vl_version=vl_version)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def _course_charts() -> dict[str, alt.TopLevelMixin]:
    gen = torch.Generator().manual_seed(0)
    maps = {m: torch.randn(1, 3, 32, 32, generator=gen) for m in ["gradient", "IG", "Grad-CAM"]}
    photo = torch.rand(1, 3, 32, 32, generator=gen)
    methods, stages = ["gradient", "guided_backprop"], ["original", "fc", "block1", "stem"]
    tensors = {(m, s): torch.randn(32, 32, generator=gen) for m in methods for s in stages}
    sims = pd.DataFrame(
        [
            {"stage": s, "method": m, "metric": k, "value": v}
            for m in methods
            for k in ["spearman_abs", "ssim"]
            for s, v in zip(stages[1:], [0.8, 0.5, 0.1], strict=True)
        ]
    )
    result = sanity.CascadeResult(
        maps=None, tensors=tensors, similarity=sims, edges=None, stages=stages,
        methods=methods, target=0, order="top_down",
    )  # fmt: skip
    return {
        "heatmaps signed": sh.heatmaps(maps, size=64, title="maps"),
        "heatmaps abs": sh.heatmaps(maps, reduce="abs_mean", size=64),
        "overlay": sh.heatmaps(maps, photo=photo, overlay=True, size=64),
        "with photo": sh.heatmaps(maps, photo=photo, size=64, columns=2),
        "cascade grid": plots.cascade_grid(result, size=48, resolution=32),
        "similarity": plots.similarity_chart(result),
    }


@pytest.mark.parametrize("name", list(_course_charts()))
def test_course_charts_draw_identically_with_vega_lite_5(name):
    spec = _course_charts()[name].to_dict()
    new = _pixels(spec, None)
    old = _pixels(display.vegalite5_bundle(spec)[display.VEGALITE5_MIMETYPE], OLD)
    assert new.shape == old.shape
    assert (new != old).mean() == 0.0


def test_the_bundle_is_what_jupyterlab_draws_offline():
    chart = alt.Chart(pd.DataFrame({"x": [1, 2]})).mark_point().encode(x="x:Q")
    chart = chart.properties(title="two points")
    bundle = display.vegalite5_bundle(chart.to_dict())
    assert set(bundle) == {"application/vnd.vegalite.v5+json", "text/plain"}
    spec = bundle["application/vnd.vegalite.v5+json"]
    assert spec["$schema"].endswith("/vega-lite/v5.json")
    assert spec["mark"] == chart.to_dict()["mark"]
    assert "two points" in bundle["text/plain"]
    with pytest.raises(TypeError, match="to_dict"):
        display.vegalite5_bundle("not a spec")


def test_offline_charts_switches_the_renderer_and_back():
    before = alt.renderers.active
    try:
        assert sh.offline_charts() == "saliency-offline"
        chart = alt.Chart(pd.DataFrame({"x": [1]})).mark_point().encode(x="x:Q")
        bundle = chart._repr_mimebundle_()
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        assert "application/vnd.vegalite.v5+json" in bundle
        assert not any("cdn" in str(v) for v in bundle.values())
        assert sh.offline_charts(False) == "default"
        assert alt.renderers.active == "default"
    finally:
        alt.renderers.enable(before)


def test_importing_the_package_leaves_altair_alone():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import saliency_helpers, altair; print(altair.renderers.active)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "default"
