"""Every benchmark script still imports (its snnc names exist): a refactor that renames what a bench uses fails
here, not when someone next runs the bench (bench_prune.py went stale that way)."""
import importlib.util
from pathlib import Path

import pytest

BENCH = sorted((Path(__file__).resolve().parents[1] / "bench").glob("*.py"))


@pytest.mark.parametrize("path", BENCH, ids=[p.name for p in BENCH])
def test_bench_script_imports(path):
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as e:  # an optional peer (lava, sana-fe, ...) that this setup lacks
        if e.name and e.name.split(".")[0] in ("snnc", "bench"):
            raise
        pytest.skip(f"{path.name} needs {e.name}, not installed here")
    if '__name__ == "__main__"' in path.read_text():  # a runnable bench (not a model factory such as
        assert hasattr(module, "main"), f"{path.name} has no main()"  # snntorch_tutorial_net.py)
