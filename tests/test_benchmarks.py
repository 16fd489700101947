"""The benchmark: its measuring tools give known answers, and one quick run of the
real command writes a well-formed report with sane numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks import report
from benchmarks.flops import FlopCount, gemm_gflops
from benchmarks.fold import conv_bn_pairs, inference_copy
from benchmarks.measure import PeakRAM, measure, paired_rounds, ratio_summary
from saliency_helpers._batching import ChannelsLast, channels_last_weights, images_per_batch

ROOT = Path(__file__).resolve().parents[1]
RESNET18_FORWARD_GFLOP = 3.628  # 1.814 G multiply-adds at 224 px (torchvision's model card)


def _conv_bn_relu() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 4, 3, padding=1), nn.BatchNorm2d(4))  # fmt: skip
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 2)
    return net.eval()


def test_flop_count_is_the_convolution_formula_even_under_autograd_grad():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False).eval()
    x = torch.randn(2, 3, 10, 10, requires_grad=True)
    macs = 2 * 8 * 10 * 10 * 3 * 3 * 3  # N * C_out * H * W * C_in * k * k
    with FlopCount() as fc:
        (g,) = torch.autograd.grad(conv(x).sum(), x)  # FlopCounterMode fails here
    assert fc.total == 2 * macs * 2  # forward + gradient to the input (no weight gradient)
    with FlopCount() as fc, torch.inference_mode():
        conv(x)
    assert fc.total == 2 * macs  # conv2d under inference_mode is counted too


def test_flop_count_counts_a_depthwise_weight_gradient_like_its_forward_pass():
    conv = nn.Conv2d(16, 16, 3, padding=1, groups=16)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    with FlopCount() as fc:
        conv(x).sum().backward()  # input and weight gradients
    assert fc.by_op["convolution_backward"] == 2 * fc.by_op["convolution"]


def test_channels_last_weights_are_recognised():
    net = _conv_bn_relu()
    assert not channels_last_weights(net) and not channels_last_weights(nn.Linear(2, 2))
    assert channels_last_weights(net.to(memory_format=torch.channels_last))


def test_peak_ram_sees_a_large_allocation_and_measure_times_it():
    with PeakRAM() as ram:
        block = torch.ones(50_000_000)  # 200 MB, touched
        del block
    assert 180 < ram.extra_mb < 260
    m = measure(lambda: torch.ones(1000).sum(), repeats=3)
    assert len(m.seconds) == 3 and m.best <= m.median and m.flop == 0


def test_gemm_rate_is_positive_and_counts_threads():
    g = gemm_gflops(256, repeats=2)
    assert g["gflops_best"] >= g["gflops_median"] > 0
    assert g["threads"] == torch.get_num_threads()


def test_channels_last_wrapper_computes_the_same_function_and_keeps_the_model():
    net = _conv_bn_relu()
    x = torch.randn(2, 3, 12, 12)
    weight = net[0].weight.detach().clone()
    assert torch.allclose(ChannelsLast(net)(x), net(x), atol=1e-5)
    assert net[0].weight.is_contiguous() and torch.equal(net[0].weight, weight)


def test_batch_follows_the_memory_budget():
    net = _conv_bn_relu()
    x = torch.randn(1, 3, 32, 32)
    small = images_per_batch(net, x, budget_bytes=1, most=16)
    mid = images_per_batch(net, x, budget_bytes=200_000, most=16)
    assert small == 1 and 1 < mid < 16
    assert images_per_batch(net, x, budget_bytes=1e12, most=16) == 16


def test_folding_is_exact_in_float64_and_leaves_the_model_alone():
    net = _conv_bn_relu().double()
    assert conv_bn_pairs(net) == [("0", "1"), ("3", "4")]
    folded = inference_copy(net, channels_last=False)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    assert torch.allclose(folded(x), net(x), atol=1e-12)
    assert isinstance(net[1], nn.BatchNorm2d) and isinstance(folded[1], nn.Identity)


def test_targets_are_judged_against_their_limits():
    assert report._target("x", 81.0, 80.0, "min")["ok"]
    assert not report._target("x", 79.0, 80.0, "min")["ok"]
    assert report._target("x", 1.1, 1.15, "max")["ok"]
    assert not report._target("x", 1.2, 1.15, "max")["ok"]


def test_paired_rounds_interleave_and_ratios_say_when_rounds_disagree():
    calls = []
    times = paired_rounds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # a warm-up call each, then turn by turn
    assert [len(v) for v in times.values()] == [3, 3]
    agree = ratio_summary([1.05, 1.10, 1.08], 1.15, "max")
    assert agree["agree"] and agree["median"] == 1.08
    assert (agree["low"], agree["high"]) == (1.05, 1.10)
    split = ratio_summary([1.05, 1.30, 1.10], 1.15, "max")
    assert not split["agree"]
    row = report._paired_target("x", split, 1.15, "max")
    assert row["ok"] is None and row["value"] == 1.10  # judged on no round: too noisy
    assert report._paired_target("x", agree, 1.15, "max")["ok"] is True
    slow = ratio_summary([1.2, 1.3], 1.15, "max")
    assert report._paired_target("x", slow, 1.15, "max")["ok"] is False


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--models", "resnet18",
           "--parts", "floor,methods,scaling,faithfulness", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def test_quick_run_writes_json_markdown_and_chart(quick_run):
    out, res = quick_run
    assert res["meta"]["quick"] is True and res["meta"]["cpu"] and res["meta"]["date"]
    assert res["gemm"]["gflops_best"] > 1
    md = (out / "results.md").read_text()
    assert "## Targets" in md and "| method | implementation |" in md and "## resnet18" in md
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "hconcat" in json.loads((out / "scaling.vl.json").read_text())
    assert {t["target"].split(":")[0] for t in res["targets"]} >= {"resnet18 IG-4"}


def test_quick_run_counts_resnet18_flops(quick_run):
    _, res = quick_run
    g = res["models"]["resnet18"]["gflop"]
    assert g["forward"] == pytest.approx(RESNET18_FORWARD_GFLOP, rel=0.02)
    assert g["forward_input_gradient"] == pytest.approx(2 * g["forward"], rel=0.01)
    assert g["backward_with_parameter_gradients"] == pytest.approx(3 * g["forward"], rel=0.01)


def test_quick_run_numbers_are_sane(quick_run):
    _, res = quick_run
    model = res["models"]["resnet18"]
    steps = res["config"]["ig_steps"]
    grad = model["gflop"]["forward_input_gradient"]
    rows = {(r["method"], r["impl"]): r for r in model["methods"]}
    for method in ("gradient", "input_x_gradient", "integrated_gradients", "smoothgrad",
                   "grad_cam", "guided_backprop"):  # fmt: skip
        for impl in ("helper", "textbook"):
            r = rows[(method, impl)]
            assert 0 < r["seconds_min"] <= r["seconds_median"] < 120
            assert 0 <= r["extra_ram_mb"] < 4000
            assert 0 < r["pct_of_gemm"] < 150
    # IG: one forward + input gradient per step, plus F(x) and F(x') for completeness.
    assert rows[("integrated_gradients", "helper")]["gflop"] == pytest.approx(
        (steps + 1) * grad, rel=0.01
    )
    assert rows[("smoothgrad", "helper")]["gflop"] == pytest.approx(steps * grad, rel=0.01)
    textbook_ig = rows[("integrated_gradients", "textbook")]["gflop"]
    assert textbook_ig == pytest.approx(steps * model["gflop"]["backward_with_parameter_gradients"],
                                        rel=0.01)  # fmt: skip
    # the ratios of the targets come from paired rounds, one value per round
    for paired in model["paired"]:
        n = res["config"]["paired_rounds"]
        assert all(len(v) == n and min(v) > 0 for v in paired["seconds"].values())
    ratios = model["paired_ratios"]["integrated_gradients"]["floor_ratio"]
    assert ratios["low"] <= ratios["median"] <= ratios["high"]
    floor = model["floor"]
    assert floor["best"]["layout"].startswith(("channels-first", "channels-last"))
    assert "folded" not in floor["best"]["layout"] and "folded" in floor["best_folded"]["layout"]
    assert all(r["seconds_per_image"] > 0 for r in floor["rows"])


def test_quick_run_times_notebook_08_curves_and_roar(quick_run):
    """The helper's curves equal the one-image-per-forward loop, and both targets are judged."""
    out, res = quick_run
    rows = {r["kind"]: r for r in res["models"]["resnet18"]["curves"]}
    assert set(rows) == {"deletion", "insertion"}
    for r in rows.values():
        assert r["forwards"] == r["photos"] * (r["steps"] + 1) == 2 * 5
        assert r["helper_seconds"] > 0 and r["naive_seconds"] > 0
        assert r["max_abs_diff"] < 1e-5  # the same probabilities, batched or not
        assert r["engine"] == "onnx" and r["export_seconds"] > 0  # photo-sized: ONNX Runtime
        assert r["torch_seconds"] > 0 and r["max_abs_diff_torch"] < 1e-5  # either engine
    roar = res["roar"]
    assert roar["trainings"] == 1 * (1 + 2 * 1) and 0 < roar["maps_seconds"] <= roar["seconds"]
    assert roar["gradient_batched_seconds"] > 0 and roar["gradient_one_digit_seconds"] > 0
    names = [t["target"] for t in res["targets"]]
    assert any("notebook 08's deletion + insertion curves, 10 rankings" in n for n in names)
    assert any(n.startswith("notebook 08's ROAR, 3 trainings") for n in names)
    md = (out / "results.md").read_text()
    assert "## Deletion and insertion curves (notebook 08)" in md and "## ROAR" in md
    assert "| helper in PyTorch, s |" in md
    shortcut = res["shortcut"]
    assert [r["kind"] for r in shortcut["runs"]] == ["control", "shortcut"]  # quick: 1 variant
    assert all(r["seconds"] > 0 for r in shortcut["runs"]) and shortcut["seconds"] > 0
    assert any(n.startswith("notebook 09's trainings, 2 models") for n in names)
    assert "## Notebook 09's trainings (cache off)" in md
