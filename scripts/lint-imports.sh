#!/usr/bin/env bash
# Check the layer contract in pyproject.toml ([tool.importlinter]) with import-linter.
# The distribution maps the repository's passes/, backends/ and models/ folders to snnc.passes,
# snnc.backends and snnc.models (pyproject's package-dir); import-linter reads one package folder,
# so this assembles the installed layout in a scratch folder (copies of the .py files) and lints
# that. Usage: scripts/lint-imports.sh [PYTHON_BIN_DIR]   (default .venv/bin)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$repo/.venv/bin}" && pwd)   # absolute: the check runs from a scratch folder
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/snnc"
copy_py() {  # copy_py SRC DST: the .py files of SRC, with their folders, into DST
  mkdir -p "$2"
  (cd "$1" && find . -name '*.py' -not -path '*/__pycache__/*' -print0 | tar --null -T - -cf -) | tar -C "$2" -xf -
}
copy_py "$repo/snnc" "$tmp/snnc"
for sub in passes backends models; do copy_py "$repo/$sub" "$tmp/snnc/$sub"; done
cd "$tmp"
PYTHONPATH="$tmp" "$bin/lint-imports" "$repo/pyproject.toml" --no-cache
