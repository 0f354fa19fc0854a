"""The bundle README speaks to the firmware team: a runtime the build machine could not run is "not verified at
export" with its reason, never a Python None or the release manager's to-do (the manifest keeps the full line)."""

from __future__ import annotations

from c3ae_edge.export import runtime_env
from c3ae_edge.export.backends.common import module_missing
from c3ae_edge.export.firmware import board_status


def test_statuses_the_export_records_read_well_in_a_bundle(monkeypatch, tmp_path):
    monkeypatch.setenv("C3AE_RUNTIMES", str(tmp_path))  # nothing prepared there
    reasons = {
        runtime_env.missing("tflite-runtime"): "tflite-runtime is not prepared on the build machine",
        module_missing("c3ae_nope", "onnxruntime", "onnx"): "onnxruntime is not installed on the build machine",
        "no CUDA provider here (onnxruntime-gpu and an NVIDIA GPU are needed)": "no CUDA provider on the build machine",
    }
    for why, said in reasons.items():
        assert why, "the runtime should be missing here"
        text = board_status({"status": f"not verified: {why}", "version": None})
        assert text == f"not verified at export ({said})", text
        assert "None" not in text and "c3ae-edge" not in text and "pip extra" not in text
    assert board_status({"status": "verified", "version": "2.3.0"}) == "verified"
