"""The device check runs here with its CUDA parts skipped, saying why; its attention checks run
on the CPU backends (sdpa, flex forward)."""
import json

import torch

from research.device_check import main


def test_the_device_check_writes_its_json_and_says_what_it_skipped(tmp_path, capsys):
    out = tmp_path / "check.json"
    main(["--out", str(out)])
    result = json.loads(out.read_text())
    assert result["cuda"] == torch.cuda.is_available() is False
    for part in ("d12", "step_time"):
        assert result[part] == {"skipped": "no CUDA device here (torch.cuda.is_available() is False)"}
    for rope in ("unrotated", "fixed"):
        checks = result["attention"][rope]
        assert checks["sdpa"]["max_abs_output_diff"] == 0 and not checks["sdpa"]["padding_leaks"]
        assert checks["flex"]["max_abs_output_diff"] < 1e-5 and not checks["flex"]["padding_leaks"]
        assert checks["flex"]["backward"] is False  # no CPU backward for flex in torch 2.13
        assert "flash-attn is not installed" in checks["flash"]["skipped"]
    assert f"wrote {out}" in capsys.readouterr().out
