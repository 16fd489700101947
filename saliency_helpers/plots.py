"""Altair charts for saliency maps: faceted heatmaps, overlays, similarity lines, PNG export.

A 224x224 map drawn as one rectangle per pixel is 50,176 data rows; six of them serialise to
about 36 MB of JSON, too much for a notebook. :func:`heatmaps` instead colour-maps each map
with numpy, encodes it as a small PNG and embeds it in the chart as a ``data:`` URL drawn by
``mark_image``: six maps stay well under 1 MB (see :func:`chart_size_bytes`). The colour
legend is an ordinary Altair scale built from the same colour anchors, so it matches.

Nothing here changes Altair's global settings.

Example:
    >>> chart = heatmaps({"gradient": attr[0], "IG": ig[0]}, photo=photo)
    >>> save_png(chart, "figures/03_maps.png")
"""

from __future__ import annotations

import base64
import io
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import torch
import vl_convert
from PIL import Image

from .display import vl_convert_version
from .maps import is_signed, pool, reduce_channels, to_2d, to_frame

__all__ = [
    "DIVERGING",
    "SEQUENTIAL",
    "chart_size_bytes",
    "cascade_grid",
    "heatmaps",
    "save_png",
    "similarity_chart",
    "similarity_lines",
]

# Vega's "redblue" scheme (ColorBrewer RdBu) reversed: negative blue, zero white-ish, positive red.
DIVERGING = [
    "#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
    "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f",
]  # fmt: skip
# Vega's "viridis" at nine evenly spaced points: dark (small) to yellow (large).
SEQUENTIAL = [
    "#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c",
    "#28ae80", "#5ec962", "#addc30", "#fde725",
]  # fmt: skip
OVERLAY_MAX_ALPHA = 0.85  # the strongest pixels still let a little of the photo through


def _lut(anchors: list[str], n: int = 256) -> np.ndarray:
    """A colour map as a lookup table: ``n`` RGB rows, linear between evenly spaced anchors."""
    rgb = np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in anchors], dtype=float)
    stops = np.linspace(0, 1, len(anchors))
    t = np.linspace(0, 1, n)
    return np.stack([np.interp(t, stops, rgb[:, c]) for c in range(3)], axis=1).round()


def _png_url(t: np.ndarray, anchors: list[str], alpha: np.ndarray | None = None) -> str:
    """Encode ``t`` in [0, 1] as a palette PNG (one byte per pixel) and return a data URL."""
    image = Image.fromarray(np.round(t * 255).astype(np.uint8), mode="P")
    image.putpalette(_lut(anchors).astype(np.uint8).ravel().tolist())
    extra = {} if alpha is None else {"transparency": bytes(alpha.astype(np.uint8))}
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True, **extra)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _photo_image(photo) -> Image.Image:
    if isinstance(photo, Image.Image):
        return photo.convert("RGB")
    if not isinstance(photo, torch.Tensor | np.ndarray):
        raise TypeError(f"photo must be a PIL image or a (3, H, W) tensor, got {type(photo)}")
    t = to_2d(photo)
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"photo must be shaped (3, H, W) or (1, 3, H, W), got {tuple(t.shape)}")
    if t.min() < -1e-3 or t.max() > 1 + 1e-3:
        raise ValueError(
            f"photo values lie in [{t.min():.2f}, {t.max():.2f}], not [0, 1]: "
            "undo the model's normalisation first, e.g. sh.denormalize(x, bundle)"
        )
    array = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def _jpeg_url(image: Image.Image) -> str:
    # Photos compress far better as JPEG than as PNG; maps are PNG so every pixel is exact.
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _panel_size(h: int, w: int, size: int) -> tuple[int, int]:
    """Width and height in px of a panel whose longer side is ``size``, keeping the aspect."""
    if w >= h:
        return size, max(1, round(size * h / w))
    return max(1, round(size * w / h)), size


def _legend(lo: float, hi: float, anchors: list[str], title: str, width: int) -> alt.Chart:
    """A colour bar: rects along x, coloured by the same anchors as the images."""
    edges = np.linspace(lo, hi, 129)
    bar = pd.DataFrame({"v0": edges[:-1], "v1": edges[1:], "v": (edges[:-1] + edges[1:]) / 2})
    # One domain stop per anchor plus RGB interpolation reproduces the images' lookup table.
    scale = alt.Scale(
        domain=np.linspace(lo, hi, len(anchors)).tolist(), range=anchors, interpolate="rgb"
    )
    return (
        alt.Chart(bar)
        .mark_rect()
        .encode(
            x=alt.X("v0:Q", title=title, scale=alt.Scale(domain=[lo, hi], nice=False)),
            x2="v1:Q",
            color=alt.Color("v:Q", scale=scale, legend=None),
            stroke=alt.Stroke("v:Q", scale=scale, legend=None),  # hides seams between rects
        )
        .properties(width=width, height=12)
    )


#: The most rows a ``cells=`` chart may hold: about 0.5 MB of JSON, half the budget.
MAX_CELLS = 12_000


def _panel_keys(maps: Mapping[Any, object]) -> tuple[bool, list[tuple[str, str | None]]]:
    """``(grid, [(row, column), ...])``: tuple keys make a grid, string keys a wrapped row."""
    keys = list(maps)
    tuples = [isinstance(k, tuple) for k in keys]
    if any(tuples) and not all(tuples):
        raise ValueError(
            "maps' keys must be all labels ('gradient') or all (row, column) pairs "
            "(('gradient', 'fc')), not a mix"
        )
    if not any(tuples):
        return False, [(str(k), None) for k in keys]
    if any(len(k) != 2 for k in keys):
        raise ValueError("grid keys are (row, column) pairs, e.g. ('gradient', 'layer4')")
    return True, [(str(r), str(c)) for r, c in keys]


def heatmaps(
    maps: Mapping[Any, object],
    *,
    photo=None,
    reduce: str = "sum",
    signed: bool | None = None,
    shared_scale: bool = True,
    clip: float | None = 99.0,
    overlay: bool = False,
    columns: int = 4,
    size: int = 180,
    cells: int | None = None,
    title: str | None = None,
) -> alt.VConcatChart:
    """Draw saliency maps as one faceted chart, one panel per map, with one colour bar.

    The maps become a tidy frame, one row per panel with the map as a small PNG ``data:``
    URL, drawn by ``alt.Chart(frame).mark_image().encode(url=...).facet(...)``. String keys
    give panels in rows of ``columns``; ``(row, column)`` keys give a grid, e.g.
    ``{(method, stage): map}`` for methods x stages. With ``cells=n`` each map is average-
    pooled to ``n x n`` cells drawn with ``mark_rect``: hover a cell to read its value.

    Args:
        maps: Mapping ``label -> map`` or ``(row, column) -> map``; each map
            ``(1, C, H, W)``, ``(C, H, W)`` or ``(H, W)``. Channel maps are reduced with
            ``reduce`` (see ``maps.reduce_channels``).
        photo: Optional PIL image or ``(3, H, W)`` tensor in [0, 1], shown as the first panel
            (labels only), or under every map with ``overlay=True``.
        reduce: ``"sum"`` (signed), ``"abs_mean"`` or ``"abs_max"``.
        signed: Diverging colours centred at 0 (``True``) or a sequential ramp for magnitudes
            (``False``); ``None`` decides with ``maps.is_signed`` (any clearly negative value).
        shared_scale: ``True``: one colour range for all panels, so panels compare in value.
            ``False``: each panel is scaled to its own range and the bar reads
            "normalised per panel" (-1..1 or 0..1).
        clip: Percentile of ``|map|`` at which colours saturate (``None`` = the maximum).
        overlay: Draw each map translucent over ``photo`` (opacity grows with ``|value|``).
            The photo should be the model input, e.g. ``sh.denormalize(x, bundle)[0]``.
        columns: Panels per row (labels only).
        size: Length in px of each panel's longer side.
        cells: Pool each map to ``cells x cells`` and draw rectangles with value tooltips
            (at most :data:`MAX_CELLS` rectangles in all, to stay within the 1 MB budget).
        title: Optional chart title.

    Returns:
        An Altair chart (the facet above a colour bar); ``chart_size_bytes(chart)`` gives
        its size.

    Example:
        >>> heatmaps({"gradient": grads[0], "IG": ig[0]}, photo=sh.denormalize(x, bundle)[0])
        >>> heatmaps({(m, s): maps[m, s] for m in methods for s in stages}, size=96)
        >>> heatmaps({"gradient": grads[0]}, cells=28)  # hover a cell: its attribution
    """
    if not maps:
        raise ValueError("maps is empty: pass a mapping such as {'gradient': attributions[0]}")
    if overlay and photo is None:
        raise ValueError("overlay=True needs a photo=... to draw the maps on")
    grid, keys = _panel_keys(maps)
    if cells is not None and (photo is not None or overlay):
        raise ValueError("cells= draws rectangles: leave out photo= and overlay=")
    if grid and photo is not None and not overlay:
        raise ValueError(
            "a (row, column) grid has no place for the photo: draw it with overlay=True, "
            "or in a chart of its own"
        )
    arrays = [reduce_channels(to_2d(m), how=reduce) for m in maps.values()]
    if cells is not None:
        if not 2 <= int(cells) <= 112:
            raise ValueError(f"cells must be between 2 and 112, got {cells}")
        if len(arrays) * cells**2 > MAX_CELLS:
            fit = int((MAX_CELLS / len(arrays)) ** 0.5)
            raise ValueError(
                f"{len(arrays)} maps x {cells}x{cells} cells is over the chart budget of "
                f"{MAX_CELLS:,} rectangles: use cells={fit} or fewer maps"
            )
        arrays = [pool(a, int(cells)) for a in arrays]
    arrays = [a.numpy() for a in arrays]
    if signed is None:
        signed = any(is_signed(a) for a in arrays)
    anchors = DIVERGING if signed else SEQUENTIAL

    def top(values: np.ndarray) -> float:
        mag = np.abs(values)
        value = np.percentile(mag, clip) if clip is not None else mag.max()
        return float(value) if value > 0 else 1.0  # an all-zero map: any positive top will do

    shared_top = top(np.concatenate([a.ravel() for a in arrays]))
    tops = [shared_top if shared_scale else top(a) for a in arrays]
    pw, ph = _panel_size(*arrays[0].shape, size)
    photo_image = None if photo is None else _photo_image(photo)
    if overlay:
        for (label, column), a in zip(keys, arrays, strict=True):
            if abs(photo_image.width / photo_image.height - a.shape[1] / a.shape[0]) > 0.02:
                name = label if column is None else (label, column)
                raise ValueError(
                    f"photo is {photo_image.width}x{photo_image.height} but map {name!r} is "
                    f"{a.shape[1]}x{a.shape[0]}: overlay the model input, "
                    "sh.denormalize(x, bundle)[0]"
                )

    if shared_scale:
        lo, hi = (-shared_top if signed else 0.0), shared_top
        what = "attribution" + (f" (clipped at percentile {clip:g} of |value|)" if clip else "")
    else:
        lo, hi = (-1.0 if signed else 0.0), 1.0
        what = "normalised per panel"

    if cells is not None:
        frames = []
        for (label, column), a, t in zip(keys, arrays, tops, strict=True):
            frame = to_frame({label: torch.from_numpy(a)}, column=column or "")
            frame["shown"] = frame["value"] / (1.0 if shared_scale else t)
            frames.append(frame)
        frame = pd.concat(frames, ignore_index=True).rename(columns={"method": "panel"})
        frame[["value", "shown"]] = frame[["value", "shown"]].astype(float).round(5)
        colour = alt.Scale(
            domain=np.linspace(lo, hi, len(anchors)).tolist(), range=anchors,
            interpolate="rgb", clamp=True,
        )  # fmt: skip
        panel = (
            alt.Chart()
            .mark_rect()
            .encode(
                x=alt.X("col:O", axis=None),
                y=alt.Y("row:O", axis=None),
                color=alt.Color("shown:Q", scale=colour, legend=None),
                tooltip=[
                    alt.Tooltip("panel:N", title="map"),
                    alt.Tooltip("row:O"),
                    alt.Tooltip("col:O"),
                    alt.Tooltip("value:Q", title="attribution", format=".3g"),
                ],
            )
            .properties(width=pw, height=ph)
        )
    else:
        # Overlay opacity grows with distance from "no attribution" (0, the ramp's centre
        # if signed).
        ramp = np.abs(np.linspace(-1, 1, 256)) if signed else np.linspace(0, 1, 256)
        alpha = np.round(255 * OVERLAY_MAX_ALPHA * ramp) if overlay else None
        rows = []
        if photo_image is not None and not overlay:
            shown = photo_image.copy()
            shown.thumbnail((2 * size, 2 * size))  # a 12-megapixel photo would blow the budget
            rows.append({"panel": "photo", "column": "", "url": _jpeg_url(shown)})
        under = None
        if overlay:
            under = _jpeg_url(photo_image.resize((2 * pw, 2 * ph)))
        for (label, column), a, t in zip(keys, arrays, tops, strict=True):
            low = -t if signed else 0.0
            scaled = np.clip((a - low) / (t - low), 0, 1)
            row = {"panel": label, "column": column or "", "url": _png_url(scaled, anchors, alpha)}
            if under is not None:
                row["under"] = under
            rows.append(row)
        frame = pd.DataFrame(rows)
        image = alt.Chart().mark_image(width=pw, height=ph, smooth=False, aspect=True)
        position = {"x": alt.value(pw / 2), "y": alt.value(ph / 2)}
        panel = image.encode(url="url:N", **position).properties(width=pw, height=ph)
        if overlay:
            photo_layer = (
                alt.Chart()
                .mark_image(width=pw, height=ph, smooth=True, aspect=True)
                .encode(url="under:N", **position)
            )
            panel = alt.layer(photo_layer, panel)

    labels = list(dict.fromkeys(frame["panel"]))
    if grid:
        chart = panel.facet(
            row=alt.Row("panel:N", sort=labels, title=None,
                        header=alt.Header(labelAngle=0, labelAlign="left")),
            column=alt.Column("column:N", sort=list(dict.fromkeys(c for _, c in keys)),
                              title=None),
            data=frame,
        )  # fmt: skip
    else:
        chart = panel.facet(
            facet=alt.Facet("panel:N", sort=labels, title=None),
            columns=columns,
            data=frame,
        )
    n_across = len(dict.fromkeys(c for _, c in keys)) if grid else min(columns, len(labels))
    legend = _legend(lo, hi, anchors, what, width=min(size * n_across, 360))
    chart = alt.vconcat(chart, legend, center=True)
    # Keep this chart's colour bar its own when students put two heatmaps side by side
    # (alt.hconcat would otherwise merge the two bars' scales into one wrong one).
    chart = chart.resolve_scale(color="independent", stroke="independent", x="independent")
    return chart.properties(title=title) if title else chart


def similarity_lines(
    df: pd.DataFrame,
    x: str = "stage",
    y: str = "value",
    color: str = "method",
    facet: str | None = "metric",
    title: str | None = None,
) -> alt.Chart | alt.FacetChart:
    """Lines with points, e.g. similarity to the original map vs. randomization depth.

    Args:
        df: Tidy frame, e.g. columns ``method, stage, metric, value``; the x axis keeps the
            order in which ``df[x]``'s values first appear (the cascade's order).
        x, y, color: Column names for the axis categories, the values and the line colour.
        facet: Column to split into panels, or ``None`` for a single panel.
        title: Optional chart title.

    Returns:
        An Altair chart (faceted when ``facet`` is given).

    Example:
        >>> similarity_lines(cascade_frame, title="Similarity to the original map")
    """
    wanted = [x, y, color] + ([facet] if facet else [])
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise ValueError(f"df has no column(s) {missing}; its columns are {list(df.columns)}")
    order = list(pd.unique(df[x]))
    chart = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{x}:N", sort=order, axis=alt.Axis(labelAngle=-45)),
            y=alt.Y(f"{y}:Q"),
            color=alt.Color(f"{color}:N"),
            tooltip=wanted,
        )
        .properties(width=260, height=180)
    )
    if facet:
        chart = chart.facet(facet=alt.Facet(f"{facet}:N"), columns=3)
    return chart.properties(title=title) if title else chart


def chart_size_bytes(chart: alt.TopLevelMixin) -> int:
    """Size in bytes of the chart's JSON, i.e. what a notebook stores for it."""
    return len(chart.to_json().encode("utf-8"))


def save_png(chart: alt.TopLevelMixin, path, scale: float = 2) -> pathlib.Path:
    """Render a chart to a PNG file offline with vl-convert (no browser); returns the path.

    Args:
        chart: Any Altair chart.
        path: Output file; missing parent folders are created.
        scale: Pixel density, 2 gives sharp figures for slides.

    Returns:
        The path written, as a ``pathlib.Path``.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = chart.to_dict()
    version = vl_convert_version(spec.get("$schema", ""))
    png = vl_convert.vegalite_to_png(json.dumps(spec), vl_version=version, scale=scale)
    path.write_bytes(png)
    return path


# --------------------------------------------------------------------------- the cascade


def cascade_grid(
    result: Any,
    stages: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    size: int = 96,
    resolution: int = 112,
    title: str | None = None,
) -> alt.VConcatChart:
    """The cascade's maps as a grid: one row per method, one column per randomization depth.

    Each panel shows ``|map|`` (channel sum), average-pooled to ``resolution``
    pixels and scaled to its own 99th percentile (so a faint map is still
    visible: compare structure, not brightness).

    Args:
        result: from :func:`saliency_helpers.sanity.cascade`.
        stages: columns (default: the original and up to six stages spread over the cascade).
        methods: rows (default all of ``result.methods``).
        size: panel side in px.
        resolution: side of the pooled maps (smaller keeps the chart under 1 MB).
        title: chart title.

    Returns:
        An Altair chart (check ``sh.chart_size_bytes(chart)`` < 1 MB).

    Example:
        >>> cascade_grid(res, methods=["gradient", "guided_backprop"])
    """
    methods = list(result.methods if methods is None else methods)
    if stages is None:
        randomized = result.stages[1:]
        pick = np.unique(np.linspace(0, len(randomized) - 1, min(6, len(randomized))).round())
        stages = [result.stages[0], *[randomized[int(i)] for i in pick]]
    stages = list(stages)
    missing = [(m, s) for m in methods for s in stages if (m, s) not in result.tensors]
    if missing:
        raise ValueError(f"no map for (method, stage) {missing[:3]}; stages: {result.stages}.")
    panels = {
        (m, s): pool(result.tensors[(m, s)].abs(), resolution) for m in methods for s in stages
    }
    return heatmaps(
        panels,
        signed=False,
        shared_scale=False,
        clip=99.0,
        size=size,
        title=title or f"|map| as more layers are randomized ({result.order}); left: trained",
    )


def similarity_chart(
    result: Any, metric: str = "spearman_abs", title: str | None = None
) -> alt.FacetChart | alt.Chart:
    """Similarity to the trained model's map vs randomization depth, mean ± sd, with references.

    One panel per method. The solid line is the mean over images and seeds of the
    similarity between the trained and the randomized model's maps, the band its ± 1 sd;
    with references (two or more seeds) the grey line and band are the floor at each stage
    (two independently randomized networks), the dotted line the ceiling and the dashed
    line the verdict threshold of ``CascadeResult.verdicts``.

    Args:
        result: from :func:`saliency_helpers.sanity.cascade`.
        metric: one of ``sanity.METRICS``.
        title: chart title.

    Returns:
        A faceted Altair chart (under 1 MB).

    Example:
        >>> similarity_chart(res, "spearman_signed")
    """
    summary = result.summary(metric)
    # The trained map vs itself is the ceiling's point, drawn with the ceiling.
    keep = (summary.kind == "trained vs randomized") & (summary.stage != result.stages[0])
    lines = summary[keep | (summary.kind == "floor")].copy()
    if not result.references.empty and result.order != "independent":
        outcomes = result.stage_outcomes(metric)
        for kind, column in (("ceiling", "ceiling_mean"), ("threshold", "threshold")):
            extra = outcomes[["method", "stage", column]].rename(columns={column: "mean"})
            first = extra.groupby("method", sort=False).head(1).assign(stage=result.stages[0])
            extra = pd.concat([first, extra]).assign(kind=kind, sd=0.0)
            lines = pd.concat([lines, extra], ignore_index=True)
    lines["sd"] = lines["sd"].fillna(0.0)
    lines["lo"], lines["hi"] = lines["mean"] - lines["sd"], lines["mean"] + lines["sd"]
    kinds = [k for k in ("trained vs randomized", "floor", "ceiling", "threshold")
             if k in set(lines.kind)]  # fmt: skip
    colors = {"trained vs randomized": "#1f77b4", "floor": "#7f7f7f", "ceiling": "#2ca02c",
              "threshold": "#d62728"}  # fmt: skip
    dashes = {"trained vs randomized": [1, 0], "floor": [1, 0], "ceiling": [2, 2],
              "threshold": [6, 3]}  # fmt: skip
    x = alt.X("stage:N", sort=result.stages, axis=alt.Axis(labelAngle=-45), title=None)
    color = alt.Color(
        "kind:N", title=None, scale=alt.Scale(domain=kinds, range=[colors[k] for k in kinds]),
        legend=alt.Legend(orient="bottom", symbolType="stroke"),
    )  # fmt: skip
    base = alt.Chart().encode(x=x, color=color)
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("lo:Q", title=metric), y2="hi:Q")
    line = base.mark_line(point=True).encode(
        y="mean:Q",
        strokeDash=alt.StrokeDash(
            "kind:N", legend=None,
            scale=alt.Scale(domain=kinds, range=[dashes[k] for k in kinds]),
        ),
        tooltip=["method", "stage", "kind", alt.Tooltip("mean:Q", format=".3f"),
                 alt.Tooltip("sd:Q", format=".3f")],
    )  # fmt: skip
    pairs = [c for c in ("image", "seed") if c in result.similarity.columns]
    randomized = result.similarity[result.similarity.stage != result.stages[0]]
    n = randomized.groupby(pairs).ngroups if pairs else 1
    chart = (
        alt.layer(band.transform_filter("datum.kind != 'ceiling' && datum.kind != 'threshold'"),
                  line, data=lines)
        .properties(width=170, height=150)
        .facet(column=alt.Column("method:N", sort=result.methods, title=None))
    )  # fmt: skip
    default = (
        f"{metric} with the trained model's map ({result.order}); mean ± sd over "
        f"{len(result.images)} images x {len(result.seeds)} seeds ({n} pairs)"
    )
    return chart.properties(title=title or default)
