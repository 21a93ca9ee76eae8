#!/usr/bin/env bash
# Make Fashion-MNIST available to snnc (Debian package dataset-fashion-mnist).
# Usage: scripts/get-data.sh [--optional]
#   --optional: warn instead of failing when the data cannot be installed (tests then skip).
# The loader looks in --data-dir, then $SNNC_DATA_DIR, then /usr/share/datasets/fashion-mnist.
set -u
files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
have() { local d=$1; for f in $files; do [ -f "$d/$f" ] || return 1; done; return 0; }
for d in ${SNNC_DATA_DIR:+"$SNNC_DATA_DIR"} /usr/share/datasets/fashion-mnist; do
  if have "$d"; then echo "Fashion-MNIST: found in $d"; exit 0; fi
done
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "Fashion-MNIST: installing Debian package dataset-fashion-mnist"
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
        && have /usr/share/datasets/fashion-mnist; then
      echo "Fashion-MNIST: installed in /usr/share/datasets/fashion-mnist"; exit 0
    fi
  fi
fi
msg="Fashion-MNIST is not installed and apt-get could not install it.
  Either: apt-get install dataset-fashion-mnist   (as root; files land in /usr/share/datasets/fashion-mnist)
  or:     put $files
          in a folder DIR and run with SNNC_DATA_DIR=DIR (or snnc ... --data-dir DIR)."
if [ "${1:-}" = "--optional" ]; then echo "warning: $msg" >&2; exit 0; fi
echo "error: $msg" >&2; exit 1
