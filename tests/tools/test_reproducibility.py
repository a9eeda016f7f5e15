"""The reproducibility report: two trainings on the bundled series agree to the byte."""

from __future__ import annotations

import json

from tools.reproducibility import main


def test_repro_report_shows_two_identical_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    output = tmp_path / "repro.json"
    code = main(["--json", "--output", str(output)])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["identical"] for r in rows] == [True] * 3
    report = json.loads(output.read_text())
    first, second = report["runs"]
    assert report["identical"] is True and report["differences"] == []
    for target in ("zone1", "zone2", "zone3"):
        assert first["targets"][target]["prediction_sha256"] == second["targets"][target]["prediction_sha256"]
        assert first["targets"][target]["metrics"] == second["targets"][target]["metrics"]
        assert len(first["targets"][target]["model_sha256"]) == 64


def test_processed_data_that_does_not_exist_yet_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    assert main(["--data", "processed", "--output", str(tmp_path / "r.json")]) == 1
    assert "no processed dataset yet" in capsys.readouterr().err
