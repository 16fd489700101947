"""The course's performance benchmark: one command, one report.

    python -m benchmarks.run            # full run, ~10 min on 2 cores; writes benchmarks/results/
    python -m benchmarks.run --quick    # tiny sizes, ~1 min; writes build/benchmarks-quick/

In one run it measures this machine's fp32 matrix-multiply rate, then for both
course models (ResNet18, EfficientNet-Lite0) and every method: median and best
wall time, FLOPs counted with PyTorch's formulas, % of the matrix-multiply rate,
peak extra RAM, and the speed-up over the textbook implementation measured in
the same run; the best forward+input-gradient time per image over batch sizes and
memory layouts (the floor); how time and memory grow with IG's steps, the number
of images and the image size; the model-randomization cascade; the data-
randomization training; notebook 08's deletion and insertion curves (helper vs one image per
forward pass) and its ROAR recipe with an empty cache; notebook 09's trainings with and
without the planted mark. Each model runs in its own process,
so memory figures do not mix. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from saliency_helpers.attribution import COURSE_METHODS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUICK_OUT = ROOT / "build" / "benchmarks-quick"
PARTS = ("floor", "methods", "scaling", "cascade", "training", "faithfulness")
METHODS = COURSE_METHODS
#: A floor variant the helpers do not use (see benchmarks/fold.py for why).
CHANNELS_FIRST = "channels-first (NCHW) weights and inputs"
CHANNELS_LAST = "channels-last (NHWC) weights and inputs"
FOLDED = "channels-last + BatchNorm folded (not used: changes float32 results)"
CASCADE_METHODS = ("gradient", "integrated_gradients", "smoothgrad", "grad_cam", "guided_backprop")


@dataclass
class Config:
    """Sizes of one run; ``QUICK`` only checks that everything works."""

    repeats: int = 3
    textbook_repeats: int = 1
    ig_steps: int = 50
    sg_samples: int = 50
    floor_batches: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    floor_repeats: int = 2
    #: Rounds of the paired timing (helper, floor and textbook interleaved) of the ratios.
    paired_rounds: int = 5
    steps_axis: list[int] = field(default_factory=lambda: [16, 50, 200])
    steps_ram: int = 300
    batch_axis: list[int] = field(default_factory=lambda: [1, 8, 32])
    batch_steps: int = 16
    sizes: list[int] = field(default_factory=lambda: [224, 448])
    cascade_stages: int = 6
    cascade_methods: list[str] = field(default_factory=lambda: list(CASCADE_METHODS))
    #: Notebook 06's verdict cascade, as the notebook runs it at full size: every course
    #: photo, two seeds, three stages, seven methods, IG's steps by the completeness rule.
    notebook_cascade: dict[str, Any] = field(
        default_factory=lambda: {
            "photos": 5,
            "seeds": 2,
            "stages": 3,
            "methods": [*COURSE_METHODS, "guided_grad_cam"],
            "method_kwargs": {
                "integrated_gradients": {"baselines": "black"},
                "smoothgrad": {"nt_samples": 16},
            },
        }
    )
    training: dict[str, Any] = field(default_factory=dict)
    #: Notebook 08's deletion and insertion curves: one ranking (the gradient) on this
    #: many photos at this many steps, helper vs one image per forward pass.
    curve_photos: int = 5
    curve_steps: int = 100
    #: The rankings notebook 08 draws curves for (its 9 maps and the random ranking): the
    #: helper's time for all of them is projected from the one ranking measured.
    curve_rankings: int = 10
    #: Notebook 08's ROAR recipe at full size, run with an empty cache.
    roar: dict[str, Any] = field(
        default_factory=lambda: {
            "methods": ["gradient", "integrated_gradients", "grad_cam"],
            "n_train": 1500, "epochs": 2, "fractions": [0.0, 0.3, 0.6], "seeds": [0, 1, 2],
            "naive_digits": 500, "method_kwargs": {"integrated_gradients": {"n_steps": 32}},
        }
    )  # fmt: skip
    #: Notebook 09's trainings at full size: a clean control and the shortcut variants
    #: (p, strength) on seed 0, and a shortcut and a clean model on each further seed.
    shortcut: dict[str, Any] = field(
        default_factory=lambda: {
            "epochs": 8, "n_train": None, "size": 5, "marked_class": 7,
            "variants": [[0.9, 1.0], [0.3, 1.0], [0.9, 0.3]], "seeds": [0, 1],
        }
    )  # fmt: skip
    gemm_n: int = 4096
    gemm_repeats: int = 5

    def sizes_of(self, method: str) -> dict[str, int]:
        """The benchmarked size of ``method``: IG's steps, SmoothGrad's samples, else {}."""
        return {
            "integrated_gradients": {"n_steps": self.ig_steps},
            "smoothgrad": {"nt_samples": self.sg_samples},
        }.get(method, {})


FULL = Config()
QUICK = Config(
    repeats=1,
    ig_steps=4,
    sg_samples=4,
    floor_batches=[1, 2],
    floor_repeats=1,
    paired_rounds=2,
    steps_axis=[2, 4],
    steps_ram=8,
    batch_axis=[1, 2],
    batch_steps=2,
    sizes=[160, 224],
    cascade_stages=3,
    cascade_methods=["gradient", "grad_cam"],
    notebook_cascade={},
    training={"n_train": 256, "epochs": 1},
    curve_photos=2,
    curve_steps=4,
    roar={"methods": ["gradient"], "n_train": 128, "epochs": 1, "fractions": [0.0, 0.5],
          "seeds": [0], "naive_digits": 16, "method_kwargs": {}},
    shortcut={"epochs": 1, "n_train": 128, "size": 5, "marked_class": 7,
              "variants": [[0.9, 1.0]], "seeds": [0]},
    gemm_n=1024,
    gemm_repeats=3,
)


# ---------------------------------------------------------------------------
# Worker: one model (or the training) in a fresh process


def _silence() -> None:
    import saliency_helpers as sh

    warnings.simplefilter("ignore", sh.CompletenessWarning)
    warnings.filterwarnings("ignore", message=".*[Ii]nternal batch size.*")
    warnings.filterwarnings("ignore", message=".*backward hook.*")
    warnings.filterwarnings("ignore", message=".*did not already require gradients.*")


def _log(what: str, start: float) -> None:
    print(f"    {what}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def _model_worker(name: str, cfg: Config, parts: list[str]) -> dict[str, Any]:
    import torch

    import saliency_helpers as sh
    from benchmarks import fold, models, textbook
    from benchmarks.flops import FlopCount
    from benchmarks.measure import PeakRAM, measure
    from saliency_helpers._batching import channels_last_weights

    _silence()
    torch.manual_seed(0)
    b, weights = models.load(name)
    net = b.model
    x = b.preprocess(sh.course_photo("corella"))
    with torch.inference_mode():
        target = int(net(x).argmax())
    out: dict[str, Any] = {
        "weights": weights,
        "layout": "channels-last" if channels_last_weights(net) else "channels-first",
        "target": target,
        "threads": torch.get_num_threads(),
    }

    # Work of one pass, counted.
    with FlopCount() as fc:
        with torch.inference_mode():
            net(x)
    forward = fc.total
    with FlopCount() as fc:
        xr = x.clone().requires_grad_(True)
        torch.autograd.grad(net(xr)[0, target], xr)
    fwd_grad = fc.total
    trainable = textbook.trainable_copy(net)
    with FlopCount() as fc:
        textbook.gradient(trainable, x, target)
    out["gflop"] = {
        "forward": forward / 1e9,
        "forward_input_gradient": fwd_grad / 1e9,
        "backward_with_parameter_gradients": fc.total / 1e9,
    }

    if "floor" in parts:
        start = time.perf_counter()
        out["floor"] = _floor(net, x, target, cfg, fwd_grad, fold, measure)
        _log("floor", start)

    def helper(method: str, inputs: Any = x, **kw: Any):
        call = {**cfg.sizes_of(method), **kw}
        targets = [target] * len(inputs)
        # The helpers measure a network's activation memory once per input shape (one
        # forward pass); do it here so that it is not counted in the first measurement.
        sh.attribution.images_at_once(net, inputs)
        return lambda: sh.attribute(method, b, inputs, target=targets, **call)

    if "methods" in parts:
        start = time.perf_counter()
        rows = []
        for method in METHODS:
            m = measure(helper(method), cfg.repeats)
            rows.append({"method": method, "impl": "helper", **m.as_dict()})
        # What the channels-last layout buys: the same calls on a channels-first copy.
        first = dataclasses.replace(b, model=_layout_copy(net, torch.contiguous_format))
        for method in ("integrated_gradients", "smoothgrad"):
            kw = {**cfg.sizes_of(method), "channels_last": False}
            m = measure(lambda method=method, kw=kw: sh.attribute(
                method, first, x, target=[target], **kw), max(1, cfg.repeats - 1))
            rows.append({"method": method, "impl": "helper, channels-first", **m.as_dict()})
        del first
        for method in METHODS:
            kw: dict[str, Any] = dict(cfg.sizes_of(method))
            if method == "grad_cam":
                kw["layer"] = b.gradcam_layer_name
            fn = textbook.METHODS[method]
            m = measure(lambda fn=fn, kw=kw: fn(trainable, x, target, **kw), cfg.textbook_repeats)
            rows.append({"method": method, "impl": "textbook", **m.as_dict()})
        out["methods"] = rows
        _log("methods", start)
        if "floor" in out:
            start = time.perf_counter()
            out["paired"] = _paired(b, net, x, target, trainable, out["floor"], cfg, helper)
            _log("paired rounds", start)

    if "scaling" in parts:
        start = time.perf_counter()
        rows = []
        for steps in sorted({*cfg.steps_axis, cfg.steps_ram}):
            repeats = 1 if steps <= 50 else 0
            m = measure(helper("integrated_gradients", n_steps=steps), repeats)
            rows.append({"axis": "n_steps", "value": steps, "method": "integrated_gradients",
                         "images": 1, "size": 224, **m.as_dict()})
        for n in cfg.batch_axis:
            xs = x.expand(n, -1, -1, -1).contiguous()
            for method, kw in (("gradient", {}), ("integrated_gradients",
                                                  {"n_steps": cfg.batch_steps})):
                repeats = 1 if n * kw.get("n_steps", 1) <= 128 else 0
                m = measure(helper(method, xs, **kw), repeats)
                rows.append({"axis": "batch", "value": n, "method": method, "images": n,
                             "size": 224, **kw, **m.as_dict()})
        for size in cfg.sizes:
            xs = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")
            for method, kw in (("gradient", {}), ("integrated_gradients",
                                                  {"n_steps": cfg.ig_steps})):
                repeats = 1 if size <= 224 else 0
                m = measure(helper(method, xs, **kw), repeats)
                rows.append({"axis": "image_size", "value": size, "method": method,
                             "images": 1, "size": size, **kw, **m.as_dict()})
        out["scaling"] = rows
        _log("scaling", start)

    if "cascade" in parts:
        # cascade_stages counts the rows of the cascade's table: the original model and
        # k randomized stages, spread from the logits to the first convolution.
        k = min(cfg.cascade_stages - 1, len(b.layers))
        stages = [b.layers[round(i * (len(b.layers) - 1) / max(1, k - 1))] for i in range(k)]
        # The methods as benchmarked above (IG-50, SmoothGrad-50), the helpers' defaults (IG
        # with sh.attribution.IG_STEPS steps) and what notebook 06 runs.
        as_benchmarked = {m: cfg.sizes_of(m) for m in cfg.cascade_methods if cfg.sizes_of(m)}
        settings = {"as benchmarked": as_benchmarked} if as_benchmarked else {}
        settings["helper defaults"] = {}
        rows = []
        for label, kwargs in settings.items():
            with PeakRAM() as ram:
                start = time.perf_counter()
                res = sh.cascade(b, x, cfg.cascade_methods, target=target, stages=stages,
                                 method_kwargs=kwargs)
                seconds = time.perf_counter() - start
            rows.append({"settings": label, "method_kwargs": kwargs, "stages": stages,
                         "models": len(res.stages), "methods": list(cfg.cascade_methods),
                         "seconds": seconds, "extra_ram_mb": ram.extra_mb})
            _log(f"cascade ({label})", start)
        if cfg.notebook_cascade:
            rows.append(_notebook_cascade(b, cfg.notebook_cascade))
        out["cascade"] = rows

    if "faithfulness" in parts:
        start = time.perf_counter()
        out["curves"] = _curves(b, cfg)
        _log("deletion and insertion curves", start)
    return out


def _curves(b: Any, cfg: Config) -> list[dict[str, Any]]:
    """Notebook 08's curves for one ranking: the helper (engine "auto", after the one-off ONNX
    export, timed apart), the helper on PyTorch, and one image per forward pass."""
    import torch

    import saliency_helpers as sh
    from saliency_helpers import faithfulness

    photos = sh.course_photos(sh.PHOTO_SET[: cfg.curve_photos])
    xs = torch.cat([b.preprocess(p) for p in photos.values()])
    targets = sh.resolve_target(b, xs, None)
    grad = sh.attribute("gradient", b, xs, targets)
    n, _, h, w = xs.shape
    steps = cfg.curve_steps
    counts = [round(i / steps * h * w) for i in range(steps + 1)]
    start = time.perf_counter()
    forward = faithfulness.forward_only(b.model, xs)  # the export, once per network
    export_seconds = time.perf_counter() - start
    engine = "torch" if forward is b.model else "onnx"
    rows = []
    for kind in faithfulness.KINDS:
        run = faithfulness.deletion_curve if kind == "deletion" else faithfulness.insertion_curve
        canvas_name = (faithfulness.DELETION_BASELINE if kind == "deletion"
                       else faithfulness.INSERTION_BASELINE)  # fmt: skip
        start = time.perf_counter()
        frame = run(b, xs, grad, targets, steps=steps)
        helper_seconds = time.perf_counter() - start
        start = time.perf_counter()
        in_torch = run(b, xs, grad, targets, steps=steps, engine="torch")
        torch_seconds = time.perf_counter() - start

        start = time.perf_counter()  # the textbook loop: one image, one step, one forward
        canvas = sh.make_baseline(canvas_name, xs, b)
        naive = []
        with torch.inference_mode():
            for i in range(n):
                order = grad[i].sum(dim=0).flatten().argsort(descending=True, stable=True)
                for count in counts:
                    shown = torch.zeros(h * w, dtype=torch.bool)
                    shown[order[:count]] = True
                    mask = shown.view(1, 1, h, w)
                    below, above = ((canvas[i:i + 1], xs[i:i + 1]) if kind == "deletion"
                                    else (xs[i:i + 1], canvas[i:i + 1]))  # fmt: skip
                    z = torch.where(mask, below, above)
                    naive.append(float(b.model(z).softmax(dim=1)[0, targets[i]]))
        naive_seconds = time.perf_counter() - start
        diff = float((torch.tensor(naive) - torch.tensor(frame["score"].to_numpy())).abs().max())
        diff_torch = float((in_torch["score"] - frame["score"]).abs().max())
        rows.append({"kind": kind, "photos": n, "steps": steps, "forwards": n * (steps + 1),
                     "engine": engine, "export_seconds": export_seconds,
                     "helper_seconds": helper_seconds, "torch_seconds": torch_seconds,
                     "naive_seconds": naive_seconds, "max_abs_diff": diff,
                     "max_abs_diff_torch": diff_torch})  # fmt: skip
    return rows


def _notebook_cascade(b: Any, nc: dict[str, Any]) -> dict[str, Any]:
    """Notebook 06's cascade over photos x seeds, timed as the notebook runs it."""
    import saliency_helpers as sh
    from benchmarks.measure import PeakRAM

    photos = sh.course_photos(sh.PHOTO_SET[: nc["photos"]])
    xs = [b.preprocess(p) for p in photos.values()]
    k, layers = nc["stages"], b.layers
    stages = list(dict.fromkeys(layers[round(i * (len(layers) - 1) / (k - 1))] for i in range(k)))
    seeds = tuple(range(nc["seeds"]))
    with PeakRAM() as ram:
        start = time.perf_counter()
        res = sh.cascade(b, xs, nc["methods"], seeds=seeds, stages=stages,
                         method_kwargs=nc["method_kwargs"])
        seconds = time.perf_counter() - start
    _log("cascade (notebook 06)", start)
    return {"settings": "notebook 06", "method_kwargs": nc["method_kwargs"], "stages": stages,
            "models": 1 + len(stages) * len(seeds), "methods": list(nc["methods"]),
            "photos": len(xs), "seeds": len(seeds), "ig_steps": res.ig_steps,
            "seconds": seconds, "extra_ram_mb": ram.extra_mb}


def _paired(b, net, x, target, trainable, floor, cfg, helper) -> list[dict[str, Any]]:
    """The ratios of the targets, from paired rounds: helper, floor and textbook interleaved.

    The floor is forward + input gradient of the best layout and batch within the RAM limit
    (what the helpers could at best do per pass); each round times one call of each.
    """
    import torch

    from benchmarks import textbook
    from benchmarks.measure import paired_rounds

    best = floor["best_within_ram_limit"]
    model = _layout_copy(net, torch.contiguous_format if best["layout"] == CHANNELS_FIRST
                         else torch.channels_last)  # fmt: skip
    xs = x.expand(best["batch"], -1, -1, -1).contiguous()
    if best["layout"] != CHANNELS_FIRST:
        xs = xs.contiguous(memory_format=torch.channels_last)

    def floor_call():
        xr = xs.detach().requires_grad_(True)
        torch.autograd.grad(model(xr)[:, target].sum(), xr)

    rows = []
    for method in ("integrated_gradients", "smoothgrad"):
        kw = cfg.sizes_of(method)
        fn = textbook.METHODS[method]
        times = paired_rounds(
            {"helper": helper(method), "floor": floor_call,
             "textbook": lambda fn=fn, kw=kw: fn(trainable, x, target, **kw)},
            cfg.paired_rounds,
        )  # fmt: skip
        rows.append({"method": method, "floor_layout": best["layout"],
                     "floor_batch": best["batch"], "seconds": times})  # fmt: skip
    return rows


def _layout_copy(net, memory_format):
    """A copy of ``net`` with its 4-D weights in ``memory_format`` (same values)."""
    import copy

    return copy.deepcopy(net).to(memory_format=memory_format)


def _floor(net, x, target, cfg, fwd_grad_flop, fold, measure) -> dict[str, Any]:
    """Best forward + input-gradient time per image, over batch sizes and memory layouts."""
    import torch

    variants = {
        CHANNELS_FIRST: (_layout_copy(net, torch.contiguous_format), False),
        CHANNELS_LAST: (_layout_copy(net, torch.channels_last), True),
        FOLDED: (fold.inference_copy(net), True),
    }
    rows = []
    for label, (model, channels_last) in variants.items():
        for n in cfg.floor_batches:
            xs = x.expand(n, -1, -1, -1).contiguous()
            if channels_last:
                xs = xs.contiguous(memory_format=torch.channels_last)

            def run(model=model, xs=xs):
                xr = xs.detach().requires_grad_(True)
                torch.autograd.grad(model(xr)[:, target].sum(), xr)

            m = measure(run, cfg.floor_repeats, count=False)
            rows.append({"layout": label, "batch": n, "seconds_per_image": m.best / n,
                         "seconds_per_image_median": m.median / n,
                         "gflops": fwd_grad_flop / (m.best / n) / 1e9,
                         "extra_ram_mb": m.extra_ram_mb})
    usable = [r for r in rows if r["layout"] != FOLDED]
    best = min(usable, key=lambda r: r["seconds_per_image"])
    folded = min((r for r in rows if r["layout"] == FOLDED), key=lambda r: r["seconds_per_image"])
    from benchmarks.measure import RAM_LIMIT_MB

    small = [r for r in usable if r["extra_ram_mb"] <= RAM_LIMIT_MB] or usable
    within = min(small, key=lambda r: r["seconds_per_image"])
    return {"rows": rows, "best": best, "best_folded": folded, "best_within_ram_limit": within}


def _training_worker(cfg: Config) -> dict[str, Any]:
    import torch

    from benchmarks.measure import PeakRAM
    from saliency_helpers import training

    torch.manual_seed(0)
    with PeakRAM() as ram:
        start = time.perf_counter()
        true_run, perm_run = training.train_pair(progress=False, cache=False, **cfg.training)
        seconds = time.perf_counter() - start
    runs = {}
    for label, run in (("true labels", true_run), ("permuted labels", perm_run)):
        runs[label] = {"seconds": run.seconds, "epochs": len(run.history),
                       "train_accuracy": run.train_accuracy,
                       "test_accuracy": run.test_accuracy}
    config = {k: v for k, v in asdict(true_run.config).items() if k != "labels"}
    return {"seconds": seconds, "extra_ram_mb": ram.extra_mb, "runs": runs, "config": config}


def _roar_worker(cfg: Config) -> dict[str, Any]:
    """Notebook 08's ROAR with an empty cache; its ranking step also one digit at a time."""
    import torch

    import saliency_helpers as sh
    from benchmarks.measure import PeakRAM
    from saliency_helpers import comparison, data, faithfulness, training

    _silence()
    torch.manual_seed(0)
    r = cfg.roar
    split = data.load_mnist()
    net = training.train(training.TrainConfig(n_train=r["n_train"], epochs=r["epochs"],
                                              target_accuracy=1.0),
                         split, progress=False, cache=False).model  # fmt: skip
    recipe = training.TrainConfig(epochs=r["epochs"], target_accuracy=1.0, n_train=r["n_train"])
    parts = {"train": split.x_train[: r["n_train"]], "val": split.x_val, "test": split.x_test}
    with PeakRAM() as ram:
        start = time.perf_counter()
        options = {m: o for m, o in r["method_kwargs"].items() if m in r["methods"]}
        by_part = {part: comparison.explain(net, x, r["methods"], method_kwargs=options)
                   for part, x in parts.items()}  # fmt: skip
        maps_seconds = time.perf_counter() - start
        rankings = {m: {p: by_part[p][m] for p in parts} for m in r["methods"]}
        frame = faithfulness.roar(split, {**rankings, "random": "random"},
                                  fractions=r["fractions"], config=recipe, seeds=r["seeds"],
                                  cache=False)  # fmt: skip
        seconds = time.perf_counter() - start
    digits = split.x_test[: r["naive_digits"]]
    targets = sh.resolve_target(net, digits, None)
    start = time.perf_counter()
    comparison.explain(net, digits, ["gradient"])
    batched = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(len(digits)):
        sh.attribute("gradient", net, digits[i : i + 1], targets[i])
    naive = time.perf_counter() - start
    return {"seconds": seconds, "maps_seconds": maps_seconds, "extra_ram_mb": ram.extra_mb,
            "rows": int(len(frame)),
            "trainings": len(r["seeds"]) * (1 + (len(r["methods"]) + 1)
                                             * sum(k > 0 for k in r["fractions"])),
            "recipe": r, "gradient_digits": len(digits), "gradient_batched_seconds": batched,
            "gradient_one_digit_seconds": naive}  # fmt: skip


def _shortcut_worker(cfg: Config) -> dict[str, Any]:
    """Notebook 09's trainings (the control and the marked variants), cache off."""
    import torch

    from benchmarks.measure import PeakRAM
    from saliency_helpers import data, training

    torch.manual_seed(0)
    r = cfg.shortcut
    split = data.load_mnist()
    mask = data.mark_mask(size=r["size"])
    recipe = training.TrainConfig(epochs=r["epochs"], target_accuracy=1.0, n_train=r["n_train"])
    runs = []
    with PeakRAM() as ram, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Training on .* without reaching")
        start = time.perf_counter()
        jobs = [("control", 0, None)] + [("shortcut", 0, tuple(v)) for v in r["variants"]]
        for seed in r["seeds"][1:]:
            jobs += [("control", seed, None), ("shortcut", seed, tuple(r["variants"][0]))]
        for kind, seed, variant in jobs:
            data_ = split if variant is None else data.shortcut_split(
                split, r["marked_class"], p=variant[0], mask=mask, strength=variant[1])
            run = training.train(dataclasses.replace(recipe, seed=seed), data_, progress=False,
                                 cache=False)  # fmt: skip
            runs.append({"kind": kind, "seed": seed, "variant": variant,
                         "seconds": run.seconds, "test_accuracy": run.test_accuracy})
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "extra_ram_mb": ram.extra_mb, "runs": runs, "recipe": r}


# ---------------------------------------------------------------------------
# Parent: GEMM, workers, report


def _run_worker(what: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.run", "--worker", what, "--result", str(result),
               "--parts", ",".join(args.parts)] + (["--quick"] if args.quick else [])
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT)  # the worker's progress goes to our stderr
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark worker {what!r} failed (exit {proc.returncode}).")
        data = json.loads(result.read_text())
    data["worker_seconds"] = time.perf_counter() - start
    return data


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    import captum
    import torch

    from benchmarks.measure import cpu_model, loadavg

    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": args.threads or torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "platform": platform.platform(),
        "quick": args.quick,
        "command": "python -m benchmarks.run" + (" --quick" if args.quick else ""),
        "loadavg_start": loadavg(),
        "ram_method": "peak RSS growth of the first call (VmHWM reset via /proc/self/clear_refs)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks, not numbers")
    parser.add_argument("--out", type=Path, help="output folder (default benchmarks/results, "
                        "or build/benchmarks-quick with --quick)")
    parser.add_argument("--models", default="resnet18,efficientnet_lite0")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {PARTS}")
    cfg = QUICK if args.quick else FULL

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # a command-line choice, never on import
    if args.worker:
        if args.worker == "training":
            data = _training_worker(cfg)
        elif args.worker == "roar":
            data = _roar_worker(cfg)
        elif args.worker == "shortcut":
            data = _shortcut_worker(cfg)
        else:
            data = _model_worker(args.worker, cfg, args.parts)
        args.result.write_text(json.dumps(data))
        return 0

    from benchmarks import report
    from benchmarks.flops import gemm_gflops
    from benchmarks.measure import loadavg
    from benchmarks.models import MODELS

    names = [m for m in args.models.split(",") if m]
    bad = sorted(set(names) - set(MODELS))
    if bad:
        parser.error(f"unknown models {bad}; choose from {MODELS}")
    start = time.perf_counter()
    results: dict[str, Any] = {"meta": _meta(args), "config": asdict(cfg)}
    print(f"GEMM {cfg.gemm_n}^3 fp32 ...", flush=True)
    results["gemm"] = gemm_gflops(cfg.gemm_n, cfg.gemm_repeats)
    print(f"  {results['gemm']['gflops_best']:.0f} GFLOP/s", flush=True)
    results["models"] = {}
    model_parts = [p for p in args.parts if p != "training"]
    for name in names:
        print(f"{name}: {', '.join(model_parts) or 'FLOP counts'} ...", flush=True)
        results["models"][name] = _run_worker(name, args)
        print(f"  done in {results['models'][name]['worker_seconds']:.0f} s", flush=True)
    if "training" in args.parts:
        print("data-randomization training (true + permuted labels) ...", flush=True)
        results["training"] = _run_worker("training", args)
        print(f"  done in {results['training']['seconds']:.0f} s", flush=True)
    if "faithfulness" in args.parts:
        print("ROAR as notebook 08 runs it, empty cache ...", flush=True)
        results["roar"] = _run_worker("roar", args)
        print(f"  done in {results['roar']['seconds']:.0f} s", flush=True)
        print("notebook 09's trainings, empty cache ...", flush=True)
        results["shortcut"] = _run_worker("shortcut", args)
        print(f"  done in {results['shortcut']['seconds']:.0f} s", flush=True)
    results["gemm_end"] = gemm_gflops(cfg.gemm_n, cfg.gemm_repeats)
    results["meta"]["loadavg_end"] = loadavg()
    results["meta"]["seconds"] = time.perf_counter() - start
    out = args.out or (QUICK_OUT if args.quick else RESULTS)
    paths = report.write(results, out)
    print(f"wrote {', '.join(str(p) for p in paths)} in {results['meta']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
