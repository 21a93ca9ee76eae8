#!/usr/bin/env bash
# What a user gets: build a wheel from the working tree, install it into a fresh virtual
# environment (torch==2.13.0 first, then the wheel with constraints.txt), then from a folder
# outside the repository:
#   1. the source checkout on PYTHONPATH (no snnc installed) imports and inspects the shipped model;
#   2. the installed wheel compiles the shipped model by name (with Fashion-MNIST when installed);
#   3. the README's Python snippet runs.
# Usage: scripts/check-wheel.sh [PYTHON]   (exit 0 when every step passed)
set -euo pipefail
PYTHON=${1:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/snnc-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "check-wheel: building the wheel"
"$PYTHON" -m pip wheel -q --no-deps -w "$work/dist" "$repo" >/dev/null
wheel=$(ls "$work"/dist/snnc-*.whl)
"$PYTHON" - "$wheel" "$repo" <<'PY'
import pathlib, subprocess, sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
repo = pathlib.Path(sys.argv[2])
files = subprocess.run(["git", "-C", str(repo), "ls-files", "snnc", "passes", "backends", "models"],
                       capture_output=True, text=True, check=True).stdout.split()
dest = {"snnc": "snnc", "passes": "snnc/passes", "backends": "snnc/backends", "models": "snnc/models"}
missing = [f for f in files if (f.endswith((".py", ".pt", ".toml")) or f.endswith(".md") and f.startswith("models"))
           and dest[f.split("/")[0]] + f[len(f.split("/")[0]):] not in names]
if missing:
    sys.exit(f"check-wheel: the wheel lacks {missing}")
print(f"check-wheel: the wheel holds all {len(files)} tracked package files")
PY
echo "check-wheel: fresh virtual environment"
"$PYTHON" -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install -q torch==2.13.0
"$py" -m pip install -q -c "$repo/constraints.txt" "$wheel"
"$py" -m pip uninstall -q -y snnc
mkdir "$work/elsewhere" && cd "$work/elsewhere"
echo "check-wheel: PYTHONPATH=<repo> without snnc installed"
PYTHONPATH="$repo" "$py" -c "import snnc.passes, snnc.backends.loihi.sim; import snnc.models as m; print(m.path('fmnist_cnn'))" >/dev/null
PYTHONPATH="$repo" "$py" -m snnc.cli inspect fmnist_cnn >/dev/null
"$py" -m pip install -q --no-deps "$wheel"
echo "check-wheel: snnc compile fmnist_cnn from $(pwd)"
data=()
if "$py" -c "from snnc.data import find_fashion_mnist; find_fashion_mnist()" 2>/dev/null; then
  data=(--data fashion-mnist --limit 200)
else
  echo "check-wheel: Fashion-MNIST not installed: compiling without --data" >&2
fi
"$work/venv/bin/snnc" compile fmnist_cnn --target loihi-sim -o out "${data[@]}" >/dev/null
"$py" - <<'PY'
import json
rep = json.load(open("out/report.json"))
assert rep["target"] == "loihi-sim" and rep["totals"]["cores"] > 0
acc = rep.get("accuracy")
print("check-wheel: compiled in the fresh environment:", rep["totals"]["cores"], "cores",
      "" if acc is None else f"accuracy {acc['compiled']:.3f} on {acc['samples']} images")
assert acc is None or acc["compiled"] > 0.8
PY
if [ ${#data[@]} -gt 0 ]; then
  echo "check-wheel: the README's Python snippet"
  "$py" - "$repo/README.md" <<'PY'
import re, sys
code = next(b for b in re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), re.S) if "compiled accuracy" in b)
exec(compile(code, "README.md", "exec"), {})
PY
fi
echo "check-wheel: ok"
