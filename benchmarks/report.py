"""Turn one run's measurements into results.json, results.md and the scaling chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.measure import RAM_LIMIT_MB, ratio_summary
from saliency_helpers.attribution import IG_STEPS

TARGETS = {
    "pct_of_gemm": 80.0,
    "floor_ratio": 1.15,
    "textbook_speedup": 2.0,
    "cascade_seconds": 60.0,
    "notebook_cascade_seconds": 240.0,
    "training_seconds": 180.0,
    # Issue 14: notebook 08's curves for all its rankings on 5 photos at ~100 steps, and its
    # ROAR with an empty cache.
    "curves_seconds": 60.0,
    "roar_seconds": 180.0,
    # Issue 15: notebook 09's trainings with and without the mark, empty cache.
    "shortcut_seconds": 120.0,
}
# The cascade rows checked against the target, and how the targets table names them.
CASCADE_TARGET_SETTINGS = {
    "as benchmarked": "IG and SmoothGrad as benchmarked above",
    "helper defaults": f"at the helpers' defaults (IG with {IG_STEPS} steps)",
}


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """Add % of peak, speed-ups, floor ratios and the target checks to ``results``."""
    cfg = results["config"]
    peak = results["gemm"]["gflops_best"]
    targets = []
    for name, model in results["models"].items():
        rows = model.get("methods", [])
        textbook = {r["method"]: r for r in rows if r["impl"] == "textbook"}
        floor = model.get("floor", {}).get("best")
        for r in rows:
            r["gflops"] = r["gflop"] / r["seconds_min"]
            r["pct_of_gemm"] = 100.0 * r["gflops"] / peak
            passes = {"integrated_gradients": cfg["ig_steps"], "smoothgrad": cfg["sg_samples"]}
            r["passes"] = passes.get(r["method"], 1)
            if r["impl"] != "textbook" and r["method"] in textbook:
                slow = textbook[r["method"]]["seconds_median"]
                r["textbook_speedup"] = slow / r["seconds_median"]
            if floor:
                r["floor_ratio"] = r["seconds_median"] / (r["passes"] * floor["seconds_per_image"])
                within = model["floor"]["best_within_ram_limit"]["seconds_per_image"]
                r["floor_ratio_within_ram_limit"] = r["seconds_median"] / (r["passes"] * within)
        helper = {r["method"]: r for r in rows if r["impl"] == "helper"}
        paired = {p["method"]: _paired_ratios(p, cfg) for p in model.get("paired", [])}
        model["paired_ratios"] = paired
        for method, label in (("integrated_gradients", "IG"), ("smoothgrad", "SmoothGrad")):
            r = helper.get(method)
            if r is None:
                continue
            tag = f"{name} {label}-{r['passes']}"
            if name == "resnet18":
                targets.append(_target(f"{tag}: % of GEMM rate (counted FLOP / best time)",
                                       r["pct_of_gemm"], TARGETS["pct_of_gemm"], "min"))
            if method in paired:
                p = paired[method]
                targets.append(_paired_target(
                    f"{tag}: time / ({r['passes']} x floor per image), paired rounds",
                    p["floor_ratio"], TARGETS["floor_ratio"], "max"))
                targets.append(_paired_target(
                    f"{tag}: speed-up over the textbook loop, paired rounds",
                    p["textbook_speedup"], TARGETS["textbook_speedup"], "min"))
            else:  # runs without the floor part: the separately measured medians
                if "floor_ratio" in r:
                    targets.append(_target(f"{tag}: median time / ({r['passes']} x best "
                                           "per-image forward+input-gradient)", r["floor_ratio"],
                                           TARGETS["floor_ratio"], "max"))
                if "textbook_speedup" in r:
                    targets.append(_target(f"{tag}: speed-up over the textbook loop (medians)",
                                           r["textbook_speedup"], TARGETS["textbook_speedup"],
                                           "min"))
        if helper:
            worst = max(helper.values(), key=lambda r: r["extra_ram_mb"])
            targets.append(_target(f"{name}: largest extra RAM of one method on one 224² image "
                                   f"({worst['method']}), MB", worst["extra_ram_mb"],
                                   RAM_LIMIT_MB, "max"))
        for r in model.get("scaling", []):
            if r["axis"] == "n_steps" and r["value"] == cfg["steps_ram"]:
                targets.append(_target(f"{name}: extra RAM of IG with {r['value']} steps, MB",
                                       r["extra_ram_mb"], RAM_LIMIT_MB, "max"))
        for r in model.get("cascade", []):
            if r["settings"] == "notebook 06":
                targets.append(_target(f"{name}: notebook 06's cascade, {len(r['methods'])} "
                                       f"methods x {r['photos']} photos x {r['seeds']} seeds x "
                                       f"{len(r['stages'])} stages (IG {r['ig_steps']} steps), s",
                                       r["seconds"], TARGETS["notebook_cascade_seconds"], "max"))
            if r["settings"] in CASCADE_TARGET_SETTINGS:
                targets.append(_target(f"{name}: cascade, {len(r['methods'])} methods x "
                                       f"{r['models']} stages (the original + "
                                       f"{len(r['stages'])} randomized), "
                                       f"{CASCADE_TARGET_SETTINGS[r['settings']]}, s",
                                       r["seconds"], TARGETS["cascade_seconds"], "max"))
    for name, model in results["models"].items():
        rows = model.get("curves", [])
        if rows:
            k = cfg["curve_rankings"]
            total = rows[0].get("export_seconds", 0.0) + k * sum(r["helper_seconds"] for r in rows)
            targets.append(_target(f"{name}: notebook 08's deletion + insertion curves, {k} "
                                   f"rankings x {rows[0]['photos']} photos x "
                                   f"{rows[0]['steps']} steps (projected from one ranking, "
                                   f"engine {rows[0].get('engine', 'torch')}, export "
                                   "included), s",
                                   total, TARGETS["curves_seconds"], "max"))
    if "roar" in results:
        r = results["roar"]
        targets.append(_target(f"notebook 08's ROAR, {r['trainings']} trainings, empty cache, s",
                               r["seconds"], TARGETS["roar_seconds"], "max"))
    if "shortcut" in results:
        r = results["shortcut"]
        targets.append(_target(f"notebook 09's trainings, {len(r['runs'])} models, empty cache, s",
                               r["seconds"], TARGETS["shortcut_seconds"], "max"))
    if "training" in results:
        targets.append(_target("data-randomization training, both models, s",
                               results["training"]["seconds"], TARGETS["training_seconds"],
                               "max"))
    results["targets"] = targets
    return results


def _target(name: str, value: float, limit: float, kind: str) -> dict[str, Any]:
    ok = value >= limit if kind == "min" else value <= limit
    return {"target": name, "value": value, "limit": limit, "kind": kind, "ok": bool(ok)}


def _paired_ratios(paired: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """Per-round ratios of one method's paired rounds, summarised against their targets."""
    passes = {"integrated_gradients": cfg["ig_steps"], "smoothgrad": cfg["sg_samples"]}
    n = passes[paired["method"]]
    t = paired["seconds"]
    per_image = [f / paired["floor_batch"] for f in t["floor"]]
    floor = [h / (n * f) for h, f in zip(t["helper"], per_image, strict=True)]
    speedup = [tb / h for tb, h in zip(t["textbook"], t["helper"], strict=True)]
    return {
        "floor_ratio": ratio_summary(floor, TARGETS["floor_ratio"], "max"),
        "textbook_speedup": ratio_summary(speedup, TARGETS["textbook_speedup"], "min"),
    }


def _paired_target(name: str, summary: dict[str, Any], limit: float, kind: str) -> dict[str, Any]:
    """A target judged on the median of paired rounds, or not judged when rounds disagree."""
    row = _target(name, summary["median"], limit, kind)
    row.update(low=summary["low"], high=summary["high"], rounds=len(summary["rounds"]))
    if not summary["agree"]:
        row["ok"] = None  # some rounds meet the target, others do not: too noisy to judge
    return row


def _f(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    meta, gemm = results["meta"], results["gemm"]
    cfg = results["config"]
    lines = [
        "# Benchmark results",
        "",
        f"- date: {meta['date']}; CPU: {meta['cpu']} ({meta['cores']} cores, "
        f"{meta['threads']} torch threads); torch {meta['torch']}, captum {meta['captum']}, "
        f"Python {meta['python']}",
        f"- command: `{meta['command']}`" + (" (quick: sizes too small to judge)"
                                             if meta["quick"] else ""),
        f"- fp32 GEMM {gemm['n']}³: best {gemm['gflops_best']:.0f} GFLOP/s (median "
        f"{gemm['gflops_median']:.0f}); at the end of the run best "
        f"{results['gemm_end']['gflops_best']:.0f}. Every \"% of GEMM\" divides by the first "
        "best rate.",
        f"- load average at start {meta['loadavg_start']}, at end {meta.get('loadavg_end')}; "
        f"run took {meta['seconds'] / 60:.1f} min",
        f"- peak extra RAM: {meta['ram_method']}",
        "- FLOPs: counted with PyTorch's per-operator formulas (torch.utils.flop_counter's "
        "registry, 2 FLOP per multiply-add, convolutions and matrix products only)",
        "",
    ]
    for name, model in results["models"].items():
        lines.append(f"- {name}: {model['weights']}; weights stored {model['layout']} as "
                     "loaded (the textbook loops run that way)")
    lines += ["", "## Targets", "",
              "Ratios come from paired rounds (helper, floor and textbook timed in turn, the "
              "ratio taken per round): the value is their median, the range their lowest and "
              "highest; \"too noisy to judge\" means some rounds met the target and others "
              "did not.", "",
              "| target | value | range over rounds | limit | ok |", "|---|---:|---:|---:|:-:|"]
    for t in results.get("targets", []):
        sign = "≥" if t["kind"] == "min" else "≤"
        spread = f"{_f(t['low'])}–{_f(t['high'])} ({t['rounds']})" if "low" in t else ""
        ok = "too noisy to judge" if t["ok"] is None else ("yes" if t["ok"] else "**no**")
        lines.append(f"| {t['target']} | {_f(t['value'])} | {spread} | {sign} {t['limit']:g} "
                     f"| {ok} |")
    for name, model in results["models"].items():
        g = model["gflop"]
        lines += [
            "",
            f"## {name}",
            "",
            f"Counted work of one 224² image: forward {g['forward']:.3f} GFLOP, forward + "
            f"input gradient {g['forward_input_gradient']:.3f}, `.backward()` with parameter "
            f"gradients {g['backward_with_parameter_gradients']:.3f}. IG {cfg['ig_steps']} "
            f"steps, SmoothGrad {cfg['sg_samples']} samples.",
            "",
        ]
        if model.get("methods"):
            lines += [
                "| method | implementation | median s | best s | GFLOP | GFLOP/s | % of GEMM "
                "| extra RAM MB | speed-up vs textbook | × floor |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for r in model["methods"]:
                lines.append(
                    f"| {r['method']} | {r['impl']} | {_f(r['seconds_median'], 3)} | "
                    f"{_f(r['seconds_min'], 3)} | {_f(r['gflop'], 1)} | {_f(r['gflops'], 0)} | "
                    f"{_f(r['pct_of_gemm'], 0)} | {_f(r['extra_ram_mb'], 0)} | "
                    f"{_f(r['textbook_speedup']) if 'textbook_speedup' in r else ''} | "
                    f"{_f(r['floor_ratio']) if r['passes'] > 1 and 'floor_ratio' in r else ''} |"
                )
        if model.get("floor"):
            floor = model["floor"]
            best, folded = floor["best"], floor["best_folded"]
            within = floor["best_within_ram_limit"]
            many = [r for r in model.get("methods", []) if r["impl"] == "helper"
                    and r["passes"] > 1 and "floor_ratio_within_ram_limit" in r]
            ratios = ", ".join(f"{r['method']} {r['floor_ratio_within_ram_limit']:.2f}x"
                               for r in many)
            lines += [
                "",
                f"Floor: forward + input gradient per image (best of repeats). Best: "
                f"{best['seconds_per_image'] * 1e3:.1f} ms ({best['layout']}, batch "
                f"{best['batch']}, {best['gflops']:.0f} GFLOP/s, {best['extra_ram_mb']:.0f} MB); "
                "the \"× floor\" column divides by it. Best within "
                f"{RAM_LIMIT_MB:.0f} MB of extra RAM: {within['seconds_per_image'] * 1e3:.1f} ms "
                f"(batch {within['batch']}){'; against it: ' + ratios if ratios else ''}. "
                f"With BatchNorm folded: {folded['seconds_per_image'] * 1e3:.1f} ms (batch "
                f"{folded['batch']}), not used by the helpers because it changes float32 "
                "results (benchmarks/fold.py).",
                "",
                "| layout | batch | ms per image | GFLOP/s | % of GEMM | extra RAM MB |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for r in model["floor"]["rows"]:
                lines.append(
                    f"| {r['layout']} | {r['batch']} | {r['seconds_per_image'] * 1e3:.1f} | "
                    f"{r['gflops']:.0f} | {100 * r['gflops'] / gemm['gflops_best']:.0f} | "
                    f"{r['extra_ram_mb']:.0f} |"
                )
        if model.get("paired_ratios"):
            lines += [
                "",
                f"Paired rounds ({cfg['paired_rounds']}; floor: "
                f"{model['paired'][0]['floor_layout']}, batch "
                f"{model['paired'][0]['floor_batch']}):",
                "",
                "| method | × floor, median | low–high | speed-up vs textbook, median | low–high |",
                "|---|---:|---:|---:|---:|",
            ]
            for method, p in model["paired_ratios"].items():
                f, t = p["floor_ratio"], p["textbook_speedup"]
                lines.append(f"| {method} | {_f(f['median'])} | {_f(f['low'])}–{_f(f['high'])} "
                             f"| {_f(t['median'])} | {_f(t['low'])}–{_f(t['high'])} |")
        if model.get("scaling"):
            lines += [
                "",
                "Scaling (helper; times of single runs where the run is long):",
                "",
                "| axis | value | method | images | size | median s | s per image "
                "| GFLOP | extra RAM MB |",
                "|---|---:|---|---:|---:|---:|---:|---:|---:|",
            ]
            for r in model["scaling"]:
                lines.append(
                    f"| {r['axis']} | {r['value']} | {r['method']}"
                    f"{' (' + str(r['n_steps']) + ' steps)' if 'n_steps' in r else ''} | "
                    f"{r['images']} | {r['size']} | {_f(r['seconds_median'], 3)} | "
                    f"{_f(r['seconds_median'] / r['images'], 3)} | {_f(r['gflop'], 1)} | "
                    f"{_f(r['extra_ram_mb'], 0)} |"
                )
        for r in model.get("cascade", []):
            lines += [
                "",
                f"Cascade ({r['settings']}: {json.dumps(r['method_kwargs'])}): "
                f"{len(r['methods'])} methods x {r['models']} models (the original + "
                f"{r['stages']}{' x ' + str(r['seeds']) + ' seeds' if 'seeds' in r else ''})"
                f"{' x ' + str(r['photos']) + ' photos' if 'photos' in r else ''}: "
                f"{r['seconds']:.1f} s, extra RAM {r['extra_ram_mb']:.0f} MB.",
            ]
    if "training" in results:
        t = results["training"]
        runs = "; ".join(
            f"{k}: {v['epochs']} epochs, {v['seconds']:.1f} s, train acc "
            f"{v['train_accuracy']:.3f}, test acc {v['test_accuracy']:.3f}"
            for k, v in t["runs"].items()
        )
        lines += [
            "",
            "## Data-randomization training (SmallCNN on MNIST, cache off)",
            "",
            f"Both models: {t['seconds']:.1f} s, extra RAM {t['extra_ram_mb']:.0f} MB. {runs}.",
        ]
    curve_rows = [(n, r) for n, m in results["models"].items() for r in m.get("curves", [])]
    if curve_rows:
        lines += [
            "",
            "## Deletion and insertion curves (notebook 08), one ranking",
            "",
            "The helper runs its batched forward passes on the engine named (`onnx`: ONNX "
            "Runtime, exported once per network, the export timed apart); the same helper with "
            "`engine=\"torch\"` and the textbook loop (one image per forward pass) run in "
            "PyTorch. Differences are in the class probability, against the helper's.",
            "",
            "| model | curve | photos x (steps + 1) forwards | engine (export, s) | helper, s "
            "| helper in PyTorch, s | one image per forward, s | speed-up vs PyTorch "
            "| vs one per forward | max abs difference (PyTorch; one per forward) |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {n} | {r['kind']} | {r['photos']} x {r['steps'] + 1} "
            f"| {r.get('engine', 'torch')} ({r.get('export_seconds', 0.0):.1f}) "
            f"| {r['helper_seconds']:.1f} | {r.get('torch_seconds', float('nan')):.1f} "
            f"| {r['naive_seconds']:.1f} "
            f"| {r.get('torch_seconds', float('nan')) / r['helper_seconds']:.2f}x "
            f"| {r['naive_seconds'] / r['helper_seconds']:.2f}x "
            f"| {r.get('max_abs_diff_torch', float('nan')):.1e}; {r['max_abs_diff']:.1e} |"
            for n, r in curve_rows
        ]
    if "roar" in results:
        r = results["roar"]
        rec = r["recipe"]
        lines += [
            "",
            "## ROAR (notebook 08's recipe, cache off)",
            "",
            f"{len(rec['methods'])} methods + random x fractions {rec['fractions']} x seeds "
            f"{rec['seeds']}, {rec['n_train']} training digits, {rec['epochs']} epochs: "
            f"{r['trainings']} trainings, {r['seconds']:.1f} s in all ({r['maps_seconds']:.1f} s "
            f"for the maps), extra RAM {r['extra_ram_mb']:.0f} MB. Gradient maps of "
            f"{r['gradient_digits']} digits: {r['gradient_batched_seconds']:.2f} s batched vs "
            f"{r['gradient_one_digit_seconds']:.2f} s one digit per call.",
        ]
    if "shortcut" in results:
        r = results["shortcut"]
        runs = "; ".join(f"{x['kind']} seed {x['seed']}"
                         f"{' ' + str(x['variant']) if x['variant'] else ''}: "
                         f"{x['seconds']:.1f} s, test acc {x['test_accuracy']:.3f}"
                         for x in r["runs"])  # fmt: skip
        lines += ["", "## Notebook 09's trainings (cache off)", "",
                  f"{len(r['runs'])} models, {r['seconds']:.1f} s, extra RAM "
                  f"{r['extra_ram_mb']:.0f} MB. {runs}."]  # fmt: skip
    if any(m.get("scaling") for m in results["models"].values()):
        lines += ["", "![time vs IG steps and images](scaling.png)"]
    lines.append("")
    return "\n".join(lines)


def chart(results: dict[str, Any]):
    """Altair: IG time vs n_steps (one image), and seconds per image vs images per call."""
    import altair as alt
    import pandas as pd

    rows = []
    for name, model in results["models"].items():
        for r in model.get("scaling", []):
            if r["axis"] == "n_steps":
                rows.append({"panel": "steps", "model": name, "method": "IG", "x": r["value"],
                             "seconds": r["seconds_median"]})
            elif r["axis"] == "batch":
                label = "gradient" if r["method"] == "gradient" else f"IG, {r['n_steps']} steps"
                rows.append({"panel": "batch", "model": name, "method": label, "x": r["value"],
                             "seconds": r["seconds_median"] / r["images"]})
    data = pd.DataFrame(rows, columns=["panel", "model", "method", "x", "seconds"])

    def panel(key: str, x_title: str, y_title: str, title: str) -> alt.Chart:
        sub = data[data.panel == key]
        return (
            alt.Chart(sub, title=title)
            .mark_line(point=True)
            .encode(
                x=alt.X("x:Q", title=x_title, scale=alt.Scale(type="log", nice=False),
                        axis=alt.Axis(values=sorted(sub.x.unique().tolist()))),
                y=alt.Y("seconds:Q", title=y_title, scale=alt.Scale(type="log")),
                color=alt.Color("model:N", title="model"),
                strokeDash=alt.StrokeDash("method:N", title="method",
                                          legend=alt.Legend(symbolType="stroke")),
                tooltip=["model", "method", "x", alt.Tooltip("seconds:Q", format=".3f")],
            )
            .properties(width=260, height=200)
        )

    meta = results["meta"]
    return alt.hconcat(
        panel("steps", "n_steps", "seconds per call", "Integrated Gradients, one image"),
        panel("batch", "images per call", "seconds per image", "Many images per call"),
    ).properties(title=f"{meta['cpu']}, {meta['threads']} threads, {meta['date'][:10]}")


def write(results: dict[str, Any], out: Path) -> list[Path]:
    """Write results.json, results.md, scaling.png and scaling.vl.json into ``out``."""
    import saliency_helpers as sh

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    derive(results)
    paths = [out / "results.json", out / "results.md"]
    paths[0].write_text(json.dumps(results, indent=1) + "\n")
    paths[1].write_text(markdown(results))
    if any(m.get("scaling") for m in results["models"].values()):
        figure = chart(results)
        paths.append(out / "scaling.vl.json")
        paths[-1].write_text(figure.to_json())
        paths.append(sh.save_png(figure, out / "scaling.png", scale=1.5))
    return paths
