"""The compression benchmark's smoke run (``bench/bench_compress.py --quick``): every method runs end to end on
fmnist_cnn (256 training images, 1 epoch, 100 test images) and is measured by the one evaluation."""
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_compress.py"


def test_quick_run_measures_every_method(fmnist, tmp_path, capsys):
    pytest.importorskip("torch_pruning", reason="torch-pruning (the peer) is in the test extra")
    spec = importlib.util.spec_from_file_location("bench_compress", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "c.json"
    bench.main(["--quick", "--limit", "60", "--device", "cpu", "--json", str(out), "--png", str(tmp_path / "s.png"),
                "--png-energy", str(tmp_path / "e.png")])
    rows = json.loads(out.read_text())["fmnist_cnn"]
    assert set(bench.METHODS) <= {r.get("method") for r in rows.values()}
    dense = rows["dense/quick"]
    for key, r in rows.items():
        if key.startswith("dense"):
            continue
        assert r["graph_synapses"] < dense["graph_synapses"] and 0 <= r["loihi_accuracy"] <= 1, key
        assert r["test_images"] == 60 and r["train_images"] == 256
    # the peer cut the same channel counts as snnc's uniform cut
    assert rows["torch-pruning/0.5/0/quick"]["graph_synapses"] == rows["cut/0.5/0/quick"]["graph_synapses"]
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "e.png").stat().st_size > 0
    # a second run resumes: nothing left to measure
    capsys.readouterr()
    bench.main(["--quick", "--limit", "60", "--device", "cpu", "--json", str(out), "--png", str(tmp_path / "s.png"),
                "--png-energy", str(tmp_path / "e.png")])
    assert "seed 0:" not in capsys.readouterr().out
    # another test size in the same file is refused, not mixed in
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--limit", "50", "--device", "cpu", "--json", str(out), "--png", str(tmp_path / "s.png"),
                    "--png-energy", str(tmp_path / "e.png")])
