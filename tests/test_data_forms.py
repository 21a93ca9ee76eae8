"""Datasets in the forms people keep them (issue 17, first part): ``--data PATH.npz`` and an ImageFolder
``--data DIR`` give the same results as the built-in loader on the same images; every bad label or sample
ends in one line, exit 1."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from snnc import data as D
from snnc.cli import main

from conftest import TinySNN


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stderr


def accuracy(out):
    return json.loads((out / "report.json").read_text())["accuracy"]


@pytest.fixture(scope="module")
def fmnist_raw():
    try:
        root = D.find_fashion_mnist()
    except D.DataNotFoundError as e:
        pytest.skip(str(e).splitlines()[0])
    return {split: (D.read_idx(root / D.FILES[(split, "images")]), D.read_idx(root / D.FILES[(split, "labels")]))
            for split in ("train", "test")}


def test_npz_in_idx_order_equals_the_builtin_loader(fmnist_raw, bundled, tmp_path):
    """All of Fashion-MNIST written out as .npz in the IDX files' order: exactly the builtin's figures (the
    calibration samples are chosen by the same rule from the same 60,000 training images)."""
    (xtr, ytr), (xte, yte) = fmnist_raw["train"], fmnist_raw["test"]
    np.savez(tmp_path / "fm.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    assert run("compile", bundled, "-o", tmp_path / "a", "--data", "fashion-mnist", "--limit", 300)[0] == 0
    code, err = run("compile", bundled, "-o", tmp_path / "b", "--data", tmp_path / "fm.npz", "--limit", 300)
    assert code == 0, err
    a, b = accuracy(tmp_path / "a"), accuracy(tmp_path / "b")
    assert b["samples"] == 300 and (b["float"], b["compiled"]) == (a["float"], a["compiled"])
    assert "fm.npz (.npz) test split, first 300 samples" in b["source"]
    ra, rb = (json.loads((tmp_path / o / "report.json").read_text())["data"] for o in "ab")
    assert ra["splits"]["train"] == dict(rb["splits"]["train"], source=ra["splits"]["train"]["source"])
    assert ra["splits"]["train"]["samples"] == 55000 and ra["splits"]["validation"]["samples"] == 5000


def test_image_folder_of_pngs_in_another_order(fmnist_raw, bundled, tmp_path):
    """The same 600 training and 200 test images as PNG files (class, then reversed file-name order) and as
    an .npz in IDX order: exactly the same figures, because the sampling rule orders samples by content;
    against the built-in loader (calibration from all 60,000 training images): the same float accuracy,
    compiled within 0.5 pp."""
    root = tmp_path / "fm"
    for split, n in (("train", 600), ("test", 200)):
        x, y = fmnist_raw[split]
        for i in range(n):
            d = root / split / f"{y[i]:02d}-{D.CLASSES[y[i]].split('/')[0]}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).save(d / f"{999 - i:04d}.png")  # file names reverse the IDX order
    (xtr, ytr), (xte, yte) = fmnist_raw["train"], fmnist_raw["test"]
    np.savez(tmp_path / "fm.npz", x_train=xtr[:600], y_train=ytr[:600], x_test=xte[:200], y_test=yte[:200])
    assert run("compile", bundled, "-o", tmp_path / "a", "--data", "fashion-mnist", "--limit", 200)[0] == 0
    assert run("compile", bundled, "-o", tmp_path / "n", "--data", tmp_path / "fm.npz")[0] == 0
    code, err = run("compile", bundled, "-o", tmp_path / "b", "--data", root)
    assert code == 0, err
    a, n, b = accuracy(tmp_path / "a"), accuracy(tmp_path / "n"), accuracy(tmp_path / "b")
    assert (b["float"], b["compiled"]) == (n["float"], n["compiled"])
    assert b["samples"] == 200 and b["float"] == a["float"] and abs(b["compiled"] - a["compiled"]) <= 0.005
    calls = []
    xi, yi = D.load(str(root), "test", progress=lambda n, tot: calls.append((n, tot)))
    assert calls[0] == (0, 200) and calls[-1] == (200, 200)  # progress while the images are read
    assert xi.shape == (200, 1, 28, 28) and sorted(yi.tolist()) == sorted(fmnist_raw["test"][1][:200].tolist())


@pytest.fixture(scope="module")
def tiny_pickle(tmp_path_factory):
    p = tmp_path_factory.mktemp("d") / "tiny.pt"
    torch.save(TinySNN(), p)
    return p


def _npz(path, **over):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (300, 8, 8), dtype=np.uint8), "y_train": rng.integers(0, 10, 300),
              "x_test": rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), "y_test": rng.integers(0, 10, 40)}
    arrays.update(over)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("case, over, needle", [
    ("label-too-big", {"y_test": np.full(40, 12)}, "label 12 on a model with 10 outputs"),
    ("label-negative", {"y_train": np.full(300, -1)}, "label -1 is negative"),
    ("label-fraction", {"y_test": np.full(40, 0.5)}, "label 0.5 is not a whole number"),
    ("complex-images", {"x_test": np.ones((40, 8, 8), np.complex64)}, "samples must be real numbers"),
    ("nan-images", {"x_test": np.full((40, 8, 8), np.nan, np.float32)}, "NaN or infinite"),
    ("counts", {"y_test": np.zeros(39, np.int64)}, "x_test holds 40 samples but y_test 39 labels"),
    ("no-test", {"x_test": None, "y_test": None}, "no test split (arrays 'x_test' and 'y_test')"),
    ("int16-images", {"x_test": np.ones((40, 8, 8), np.int16)}, "integer images must be uint8"),
])
def test_bad_npz_is_one_line_exit_1(tiny_pickle, tmp_path, case, over, needle):
    p = _npz(tmp_path / f"{case}.npz", **over)
    code, err = run("compile", tiny_pickle, "--trust-pickle", "--num-steps", 4, "-o", tmp_path / "o", "--data", p,
                    "--json")
    assert code == 1 and err.startswith("snnc: error:") and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_good_npz_compiles_and_simulates(tiny_pickle, tmp_path):
    p = _npz(tmp_path / "ok.npz")
    code, err = run("compile", tiny_pickle, "--trust-pickle", "--num-steps", 4, "-o", tmp_path / "o", "--data", p)
    assert code == 0, err
    assert "input shape (1, 8, 8) taken from dataset" in " ".join(err.split())  # the model states none
    r = CliRunner().invoke(main, ["simulate", str(tmp_path / "o"), "--data", str(p), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["samples"] == 40
    code, err = run("compile", tiny_pickle, "--trust-pickle", "--num-steps", 4, "-o", tmp_path / "x", "--data",
                    tmp_path / "nope.npz")
    assert code == 2 and "existing PATH.npz" in err


def test_event_labels_and_frames_are_checked(tmp_path):
    from snnc.data.events import EventDataError, load_events
    from snnc.data.checks import DataFormatError
    frames = np.zeros((5, 4, 2, 3, 3), np.float32)
    np.savez(tmp_path / "half.npz", frames=frames, labels=np.full(5, 0.5))
    with pytest.raises(DataFormatError, match="label 0.5 is not a whole number"):
        load_events(tmp_path / "half.npz", 4)
    np.savez(tmp_path / "cplx.npz", frames=frames.astype(np.complex64), labels=np.zeros(5, np.int64))
    with pytest.raises(DataFormatError, match="samples must be real numbers"):
        load_events(tmp_path / "cplx.npz", 4)
    np.savez(tmp_path / "ok.npz", frames=frames, labels=np.arange(5))
    x, y = load_events(tmp_path / "ok.npz", 4)
    assert x.shape == (4, 5, 2, 3, 3) and y.tolist() == [0, 1, 2, 3, 4]
    assert issubclass(EventDataError, Exception)


LOOP_MODEL = """import snntorch as snn
import torch
from torch import nn

class Net(nn.Module):  # tutorial style: forward() loops over time itself on a constant (direct) input
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), snn.Leaky(beta=0.9, init_hidden=True,
                                 reset_mechanism="zero"), nn.Linear(32, 10),
                                 snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero"))

    def forward(self, x):
        out = []
        for _ in range(7):
            out.append(self.net(x))
        return torch.stack(out)

def make_model():
    torch.manual_seed(0)
    return Net()
"""


def test_shape_from_the_data_and_T_from_the_time_loop(fmnist_raw, tmp_path):
    """Issue 17 item 3: a file.py:factory snnTorch model with --data fashion-mnist compiles without
    --input-shape (the data's sample shape) and without --num-steps (forward() loops 7 times)."""
    pytest.importorskip("snntorch")
    (tmp_path / "net.py").write_text(LOOP_MODEL)
    r = CliRunner().invoke(main, ["compile", f"{tmp_path}/net.py:make_model", "-o", str(tmp_path / "o"),
                                  "--data", "fashion-mnist", "--limit", "20"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.stderr.split())
    assert "input shape (1, 28, 28) taken from dataset 'fashion-mnist'" in out
    assert "T = 7 time steps taken from forward()'s own time loop" in out
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["model"]["num_steps"] == 7 and rep["accuracy"]["samples"] == 20


FLAT_MODEL = LOOP_MODEL.replace("nn.Sequential(nn.Flatten(), nn.Linear(784, 32)", "nn.Sequential(nn.Linear(784, 32)")


def test_a_flat_input_model_gets_flattened_images_with_a_note(fmnist_raw, tmp_path):
    """Issue 17 item 3: snnTorch tutorial 5 flattens outside the model (its input is 784 values); given
    1x28x28 images it is traced on the flattened shape and the images are flattened, with notes."""
    pytest.importorskip("snntorch")
    (tmp_path / "net.py").write_text(FLAT_MODEL)
    r = CliRunner().invoke(main, ["compile", f"{tmp_path}/net.py:make_model", "-o", str(tmp_path / "o"),
                                  "--data", "fashion-mnist", "--limit", "20"])
    assert r.exit_code == 0, r.output
    assert "input shape (784,) (the samples of dataset 'fashion-mnist', (1, 28, 28), flattened)" in " ".join(
        r.stderr.split())
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [c for c in rep["checks"] if c["check"] == "INPUT_FLATTENED"][0]["limit"] == [784]
    r = CliRunner().invoke(main, ["simulate", str(tmp_path / "o"), "--data", "fashion-mnist", "--limit", "20",
                                  "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["accuracy"] == rep["accuracy"]["compiled"]


def _digits_report(tmp_path, name, data, **kw):
    import snnc
    torch.manual_seed(0)
    return snnc.compile(TinySNN(), input_shape=(1, 8, 8), num_steps=4, out_dir=tmp_path / name, data=data,
                        limit=kw.pop("limit", None), **kw)["accuracy"]


def test_python_objects_and_a_factory_give_the_builtin_loaders_results(tmp_path):
    """Issue 17 item 1: arrays, tensors, a Dataset, a DataLoader (snnc.data.Splits) and a file.py:factory hold
    the same digits images as --data digits and give the same float and compiled accuracy."""
    from torch.utils.data import DataLoader, TensorDataset
    from snnc.data import Splits, load_digits
    xtr, ytr = load_digits("train")
    xte, yte = load_digits("test")
    ref = _digits_report(tmp_path, "ref", "digits")
    tr, te = TensorDataset(torch.from_numpy(xtr), torch.from_numpy(ytr)), \
        TensorDataset(torch.from_numpy(xte), torch.from_numpy(yte))
    for name, data in (("arrays", (xtr, ytr, xte, yte)),
                       ("tensors", (torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte),
                                    torch.from_numpy(yte))),
                       ("dataset", Splits(train=tr, test=te, name="digits as Datasets")),
                       ("loader", Splits(train=DataLoader(tr, batch_size=64), test=DataLoader(te, batch_size=50)))):
        acc = _digits_report(tmp_path, name, data)
        assert (acc["float"], acc["compiled"], acc["samples"]) == (ref["float"], ref["compiled"], ref["samples"]), name
    assert "digits as Datasets" in _digits_report(tmp_path, "named", Splits(train=tr, test=te,
                                                                            name="digits as Datasets"))["source"]
    (tmp_path / "ds.py").write_text(
        "import torch\nfrom torch.utils.data import TensorDataset\nfrom snnc.data import load_digits\n\n"
        "def make():\n    xtr, ytr = load_digits('train')\n    xte, yte = load_digits('test')\n"
        "    return (TensorDataset(torch.from_numpy(xtr), torch.from_numpy(ytr)),\n"
        "            TensorDataset(torch.from_numpy(xte), torch.from_numpy(yte)))\n")
    acc = _digits_report(tmp_path, "factory", f"{tmp_path}/ds.py:make")
    assert (acc["float"], acc["compiled"]) == (ref["float"], ref["compiled"])
    with pytest.raises(Exception, match="tuple \\(x_train, y_train, x_test, y_test\\)"):
        _digits_report(tmp_path, "bad", [xtr, ytr])
    (tmp_path / "bad.py").write_text("def make():\n    raise RuntimeError('no data here')\n")
    code, err = run("compile", "fmnist_cnn", "-o", tmp_path / "x", "--data", f"{tmp_path}/bad.py:make", "--json")
    assert code == 1 and "calling make() failed (RuntimeError: no data here)" in err, err
