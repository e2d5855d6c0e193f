"""bench/gpu/raw.py, the Python half of bench/gpu/run.sh, on the CPU provider (a smoke run: the script must still
work on the day a GPU is lent): every encoder swept, items/s per batch size, results written with their command."""

from __future__ import annotations

import json

from bench.gpu import raw


def test_raw_sweep_writes_items_per_second_per_encoder_and_batch(tmp_path, capsys):
    out = tmp_path / "gpu"
    assert raw.main(["--providers", "cpu", "--max-batch", "2", "--min-seconds", "0.01", "--out", str(out)]) == 0
    result = json.loads((out / "raw.json").read_text())
    assert result["provider"] == "CPUExecutionProvider" and result["command"].startswith("python -m bench.gpu.raw")
    assert set(result["encoders"]) == {"image", "text", "audio"}
    for rows in result["encoders"].values():
        assert set(rows) == {"1", "2"} and all(row["items_per_s"] > 0 for row in rows.values())
    assert "| image |" in (out / "raw.md").read_text() and "batch 2" in capsys.readouterr().out
