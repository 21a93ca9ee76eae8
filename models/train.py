"""Training recipe for the zoo's Fashion-MNIST SNNs (surrogate-gradient BPTT).

    python -m snnc.models.train --epochs 10 --seed 0 --out models/fmnist_cnn.pt
    python -m snnc.models.train --arch fmnist_wide --epochs 6 --seed 0 --out models/fmnist_wide.pt
    python -m snnc.models.train --arch fmnist_res --epochs 10 --seed 0 --out models/fmnist_res.pt

Runs on the CPU, or on a CUDA GPU when there is one (``--device auto``).
Loss: cross-entropy on the readout voltage after T steps (the summed class
currents); Adam with a cosine learning-rate schedule; random horizontal flips.
Writes an snnc checkpoint (see :mod:`snnc.models`) whose ``meta`` records the
float test accuracy on all 10,000 test images, T, dt, seed, the command and the
wall-clock training time.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from snnc.data import load_fashion_mnist
from snnc.models import ARCHITECTURES, DEFAULT_CONFIGS
from snnc.neurons import run_float


def evaluate(model, x, y, num_steps, batch_size=500, device="cpu"):
    """Float accuracy: fraction of ``argmax(readout at step T) == y``."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            xb = torch.from_numpy(x[i:i + batch_size]).to(device)
            out = run_float(model, xb, num_steps)[-1]
            correct += (out.argmax(1).cpu().numpy() == y[i:i + batch_size]).sum()
    return correct / len(y)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="fmnist_cnn", choices=sorted(ARCHITECTURES))
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-steps", type=int, default=8, help="T")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="models/fmnist_cnn.pt")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="start from this snnc checkpoint's weights (read with weights_only=True; same --arch) and "
                        "train --epochs more with a fresh Adam and cosine schedule from --lr; the card records both")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep BatchNorm in eval mode while training: normalise with the running statistics that "
                        "fold_bn folds (per-step batch statistics over T steps differ from them)")
    args = p.parse_args(argv)

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)

    xtr, ytr = load_fashion_mnist("train", args.data_dir, args.train_limit)
    xte, yte = load_fashion_mnist("test", args.data_dir)
    config = dict(DEFAULT_CONFIGS[args.arch], num_steps=args.num_steps)
    model = ARCHITECTURES[args.arch](config).to(device)
    prior = None
    if args.init:
        init = torch.load(args.init, map_location="cpu", weights_only=True)
        if init.get("arch") != args.arch:
            raise SystemExit(f"--init {args.init}: architecture {init.get('arch')!r}, not {args.arch!r}")
        model.load_state_dict(init["state_dict"])
        config = dict(init["config"], num_steps=args.num_steps)
        prior = {k: init["meta"].get(k) for k in ("command", "epochs", "float_test_accuracy", "train_time_s")}
    args.prior = prior
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = (len(ytr) + args.batch_size - 1) // args.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch)

    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        if args.freeze_bn:
            for mod in model.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.eval()
        perm = rng.permutation(len(ytr))
        tot, n, correct = 0.0, 0, 0
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            xb = torch.from_numpy(xtr[idx])
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            xb[flip] = xb[flip].flip(-1)
            xb, yb = xb.to(device), torch.from_numpy(ytr[idx]).to(device)
            out = run_float(model, xb, args.num_steps)[-1]
            loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            n += len(idx)
            correct += (out.argmax(1) == yb).sum().item()
        acc = evaluate(model, xte, yte, args.num_steps, device=device)
        print(f"epoch {epoch + 1}/{args.epochs} loss {tot / n:.4f} train-acc {correct / n:.4f} "
              f"test-acc {acc:.4f} elapsed {time.time() - t0:.0f}s", flush=True)
        if epoch + 1 < args.epochs:  # a checkpoint after every epoch (the last one is written below)
            _save(model, config, args, argv, acc, len(yte), epoch + 1, time.time() - t0, device)
    model = model.cpu()
    acc = evaluate(model, xte, yte, args.num_steps)
    _save(model, config, args, argv, acc, len(yte), args.epochs, time.time() - t0, device)
    print(f"float test accuracy {acc:.4f} on {len(yte)} images; wrote {args.out} "
          f"(training {time.time() - t0:.0f}s on {device})")


def _save(model, config, args, argv, acc, n_test, epochs_done, train_time, device):
    """Write the snnc checkpoint (atomically: a killed run leaves the previous epoch's file)."""
    ckpt = {
        "format": "snnc-checkpoint",
        "version": 1,
        "arch": args.arch,
        "config": config,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": {
            "dataset": "fashion-mnist",
            "float_test_accuracy": float(acc),
            "test_samples": int(n_test),
            "num_steps": int(args.num_steps),
            "dt": float(config["dt"]),
            "seed": int(args.seed),
            "epochs": int(epochs_done) + int((args.prior or {}).get("epochs") or 0),
            "command": "python -m snnc.models.train " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "train_time_s": round(train_time + float((args.prior or {}).get("train_time_s") or 0), 1),
            "device": device if device == "cpu" else torch.cuda.get_device_name(0),
            "torch": str(torch.__version__),
            "platform": platform.machine(),
            **({"continued_from": args.prior} if args.prior else {}),
        },
    }
    tmp = args.out + ".tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
