"""The notebooks are model-agnostic: the model-dependent lectures run, at quick size, on
EfficientNet-Lite2.

Lite2 is a second offline network with another input size (260 px, 9x9 Grad-CAM maps), 21
blocks instead of 16 and its own training-time initialiser. A notebook that hard-codes a
layer name, a 224-px shape or a number true of one model only fails here. The integration
test (marked ``course``) takes minutes: ``pytest -m course tests/test_other_model.py``.
"""

from __future__ import annotations

import argparse

import pytest

from saliency_helpers.course import run
from saliency_helpers.models import MODEL_NAMES

MODEL = "efficientnet_lite2"
#: The lectures whose code meets what differs between the models: the model and its class 89
#: (00), the Grad-CAM layer and map size (05), the layers, initialisers and verdicts of the
#: cascade (06). 01, 02 and 04 call the same helpers on the input's own shape, and 07 and 08's
#: ROAR train their own MNIST network. 03's one model-dependent step (how many IG steps add
#: up within 5%) is tested on Lite2 directly in tests/test_models.py: its lecture run on
#: Lite2 took 114 s of CI's single-threaded worker for that one loop.
LECTURES = ["00", "05", "06"]


def test_the_runner_offers_lite2():
    assert MODEL in MODEL_NAMES
    parser = run.add_arguments(argparse.ArgumentParser())
    assert parser.parse_args(["--model", MODEL]).model == MODEL


@pytest.mark.course
def test_the_lectures_run_on_lite2(tmp_path):
    result = run.run_course(
        only=LECTURES,
        quick=True,
        model=MODEL,
        out=tmp_path / "notebooks",
        figures=None,
        progress=False,
    )
    assert [r.name[:2] for r in result.runs] == LECTURES
    assert result.ok, run.format_failures(result)
    assert result.summary["model"]["name"] == MODEL, result.summary["model"]
    assert result.summary["top1"]["index"] == 89, result.summary["top1"]
