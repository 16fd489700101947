"""Show Altair charts in JupyterLab without a network connection.

Altair 6's default renderer writes an HTML output whose script loads vega, vega-lite and
vega-embed from a CDN, so on an offline laptop every chart is an error message. JupyterLab
itself ships a Vega-Lite 5 renderer, which draws the ``application/vnd.vegalite.v5+json``
mimetype with no network at all. :func:`offline_charts` registers and enables an Altair
renderer that hands the chart to that built-in renderer.

Altair 6 writes Vega-Lite 6 specs. The course's charts use nothing that Vega-Lite 6 added:
``tests/test_display.py`` draws every kind of course chart with Vega-Lite 5.8 and 6 (through
vl-convert) and checks the pixels are identical, so relabelling the spec as version 5 draws
exactly the same picture. Exported HTML pages and slides (:mod:`saliency_helpers.course.export`)
inline their own copy of vega, so they work offline whatever the renderer.

Nothing happens on import: a notebook opts in with one call in its set-up cell.

Example:
    >>> import saliency_helpers as sh
    >>> sh.offline_charts()          # once, in the first cell
    'saliency-offline'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import altair as alt

__all__ = [
    "RENDERER",
    "VEGALITE5_MIMETYPE",
    "offline_charts",
    "vegalite5_bundle",
    "vl_convert_version",
]

RENDERER = "saliency-offline"
VEGALITE5_MIMETYPE = "application/vnd.vegalite.v5+json"
VEGALITE5_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
_SCHEMA_VERSION = re.compile(r"/schema/vega-lite/v(\d+)(?:\.(\d+))?")


def vl_convert_version(schemas: str | Iterable[str]) -> str | None:
    """The vl-convert Vega-Lite version (``"6.4"``) to draw charts written for ``schemas``.

    The one rule for every offline drawing (figures, exported pages): the exact version a
    ``$schema`` names if vl-convert has it, else its newest release of the same major version
    (a bare ``.../v5.json``, as :func:`vegalite5_bundle` writes, means "newest 5.x"); for
    several charts, the highest version any of them needs.

    Args:
        schemas: one chart's ``$schema`` URL, or several.

    Returns:
        A version for ``vl_convert``'s ``vl_version=``, or None (its default) when no schema
        names a Vega-Lite version it has.

    Example:
        >>> vl_convert_version("https://vega.github.io/schema/vega-lite/v5.json")
        '5.21'
    """
    import vl_convert  # only when drawing offline

    available = [tuple(map(int, v.split("."))) for v in vl_convert.get_vegalite_versions()]
    best = None
    for schema in [schemas] if isinstance(schemas, str) else schemas:
        found = _SCHEMA_VERSION.search(str(schema))
        if found is None:
            continue
        major = int(found[1])
        same_major = [v for v in available if v[0] == major]
        if not same_major:
            continue
        exact = (major, int(found[2])) if found[2] else None
        version = exact if exact in same_major else max(same_major)
        best = version if best is None else max(best, version)
    return None if best is None else f"{best[0]}.{best[1]}"


def vegalite5_bundle(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    """Turn a Vega-Lite spec into the mimebundle JupyterLab draws offline.

    Args:
        spec: the chart as a dict (``chart.to_dict()``).
        **metadata: Altair's renderer options (``embed_options``); ignored here because
            JupyterLab's renderer uses its own.

    Returns:
        ``{"application/vnd.vegalite.v5+json": spec, "text/plain": "..."}`` with the spec's
        ``$schema`` set to Vega-Lite 5.

    Example:
        >>> bundle = vegalite5_bundle(alt.Chart().mark_point().to_dict())
        >>> sorted(bundle)
        ['application/vnd.vegalite.v5+json', 'text/plain']
    """
    if not isinstance(spec, dict):
        kind = type(spec).__name__
        raise TypeError(f"spec must be a Vega-Lite dict (chart.to_dict()), got {kind}")
    spec = {**spec, "$schema": VEGALITE5_SCHEMA}
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    text = f"<Altair chart{': ' + str(title) if title else ''}>"
    return {VEGALITE5_MIMETYPE: spec, "text/plain": text}


def offline_charts(enable: bool = True) -> str:
    """Draw Altair charts with JupyterLab's built-in Vega-Lite renderer, which needs no network.

    Call it once in a notebook's set-up cell. It registers the renderer ``"saliency-offline"``
    with ``altair.renderers`` and enables it; ``offline_charts(False)`` goes back to
    Altair's ``"default"`` renderer (HTML that loads vega from a CDN).

    Args:
        enable: True to switch to the offline renderer, False to switch back.

    Returns:
        The name of the renderer now active.

    Example:
        >>> offline_charts()
        'saliency-offline'
        >>> offline_charts(False)
        'default'
    """
    if enable:
        alt.renderers.register(RENDERER, vegalite5_bundle)
        alt.renderers.enable(RENDERER)
        return RENDERER
    alt.renderers.enable("default")
    return "default"
