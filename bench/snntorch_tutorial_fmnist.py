"""The snnTorch tutorial conv net trained briefly on Fashion-MNIST, compiled for loihi-sim by the documented
route, with its float-vs-compiled accuracy.

1. Train ``bench/snntorch_tutorial_net.py:make_model`` with snnTorch itself (T = 10 steps of the direct
   image, ``snntorch.functional.ce_rate_loss``, Adam lr 1e-2 as in the tutorial) for ``--epochs`` on the
   first ``--train`` training images; save its state dict (``runs/tutorial/state.pt``).
2. Compile as written: refused (the second MaxPool2d max-pools membrane currents on the chip; the default
   subtract reset is a semantic change): the one-line errors are printed.
3. The documented route: ``adapt_semantics`` replaces that MaxPool2d by AvgPool2d and the subtract reset by
   reset-to-zero (``--allow-semantic-change``), without and with fine-tuning (``finetune_epochs``), then
   fold_bn, quantize; each compile evaluates float (the snnTorch model's semantics, snnc's executor) and
   compiled (bit-accurate loihi-sim) accuracy on the first ``--limit`` test images, and this script also
   runs snnTorch's own simulation on the same images.

Run: ``.venv/bin/python bench/snntorch_tutorial_fmnist.py [--train 20000] [--epochs 1] [--limit 10000]
[--more-finetune]`` (about 25 minutes on the shared 2-core machine, 15 more with ``--more-finetune``)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from snntorch_tutorial_net import NUM_STEPS, make_model  # noqa: E402

from snnc.data import load_fashion_mnist  # noqa: E402


def own_accuracy(net, x, y, T, bs=500):
    from snnc.frontends.base import reset_module_states
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), bs):
            reset_module_states(net)
            xb = torch.from_numpy(x[i:i + bs])
            counts = sum(net(xb)[0] for _ in range(T))
            correct += int((counts.argmax(1).numpy() == y[i:i + bs]).sum())
    return correct / len(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit", type=int, default=10000)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--more-finetune", action="store_true",
                    help="also fine-tune 2 epochs (lr 2e-3) on 8,192 training images (about 15 minutes more)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "tutorial"))
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    import snntorch.functional as SF
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = make_model()
    xtr, ytr = load_fashion_mnist("train", limit=args.train)
    xte, yte = load_fashion_mnist("test", limit=args.limit)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.9, 0.999))
    loss_fn = SF.ce_rate_loss()
    t0 = time.time()
    rng = np.random.default_rng(0)
    from snnc.frontends.base import reset_module_states
    for ep in range(args.epochs):
        perm = rng.permutation(len(ytr))
        for i in range(0, len(ytr), 128):
            idx = perm[i:i + 128]
            xb, yb = torch.from_numpy(xtr[idx]), torch.from_numpy(ytr[idx])
            reset_module_states(net)
            spk = torch.stack([net(xb)[0] for _ in range(NUM_STEPS)])
            loss = loss_fn(spk, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    train_s = time.time() - t0
    state = out / "state.pt"
    torch.save(net.state_dict(), state)
    res = {"train_images": args.train, "epochs": args.epochs, "num_steps": NUM_STEPS, "train_seconds": round(train_s),
           "test_images": int(len(yte)), "snntorch_accuracy": own_accuracy(net, xte, yte, NUM_STEPS)}
    print(json.dumps(res), flush=True)
    from snnc.driver.compiler import compile_model
    factory = f"{ROOT / 'bench' / 'snntorch_tutorial_net.py'}:make_model"
    for label, kw in (("as written", {}),
                      ("as written, --allow-semantic-change", {"allow_semantic_change": True})):
        try:
            compile_model(factory, out / "o", weights=state, data="fashion-mnist", limit=args.limit, force=True, **kw)
        except Exception as e:  # noqa: BLE001 - the refusal is the result
            res[label] = f"refused: {type(e).__name__}: {str(e).splitlines()[0][:400]}"
            print(label, "->", res[label], flush=True)
    routes = [("adapt_semantics:maxpool=avg", "adapt_semantics:maxpool=avg,fold_bn,quantize", 2048),
              (f"adapt_semantics:maxpool=avg;finetune_epochs={args.finetune_epochs}",
               f"adapt_semantics:maxpool=avg;finetune_epochs={args.finetune_epochs},fold_bn,quantize", 2048)]
    if args.more_finetune:
        routes.append(("adapt_semantics:maxpool=avg;finetune_epochs=2;lr=0.002 (8192 samples)",
                       "adapt_semantics:maxpool=avg;finetune_epochs=2;lr=0.002,fold_bn,quantize", 8192))
    for label, passes, n_ft in routes:
        t1 = time.time()
        rep = compile_model(factory, out / f"route{len(res)}", weights=state, data="fashion-mnist", limit=args.limit,
                            force=True, passes=passes, allow_semantic_change=True, finetune_samples=n_ft)
        ad = [e for e in rep["pipeline"] if e["pass"] == "adapt_semantics"][0]["notes"]
        r = {"passes": passes, "float": rep["accuracy"]["float"], "compiled": rep["accuracy"]["compiled"],
             "agreement_calibration": [c["agreement"] for c in rep["checks"] if c["check"] == "SEMANTIC_CHANGE"][0],
             "cores": rep["totals"]["cores"], "energy_uJ": rep["energy"]["per_inference_pJ"] / 1e6,
             "adapt_notes": {k: v for k, v in ad.items() if k != "changed"}, "changed": ad.get("changed"),
             "seconds": round(time.time() - t1)}
        res[label] = r
        print(label, "->", json.dumps(r), flush=True)
    (out / "result.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
