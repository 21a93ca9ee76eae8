"""Framework x model pattern: route, does it compile, measured agreement with the framework's own simulation.

For each row a model is built with the framework's usual code, trained briefly with the framework's own
forward (scikit-learn digits, 8x8, 1,500 training images, a few epochs; T = 10), compiled with snnc for
loihi-sim (``snnc.compile``, calibration on 256 training images) and then both are run on the same 297
test images: the framework's own simulation (its modules stepping over time) and the bit-accurate
loihi-sim simulation of the compiled folder. ``agreement`` is the fraction of test images on which the two
predict the same class (argmax of summed output spikes); ``fw acc`` / ``chip acc`` are their accuracies.
Rows whose semantics loihi-sim cannot keep are compiled twice: plainly (refused: the error says why and
gives the agreement measured on the calibration data), then with ``--allow-semantic-change``, and where
noted with ``adapt_semantics`` fine-tuning (``finetune_epochs=2``). A row refused for a layer (the snnTorch
tutorial conv net's MaxPool2d of membrane currents) takes its documented route instead
(``adapt_semantics:maxpool=avg``, then with ``finetune_epochs=2``).

Models trained in another form than they are simulated: the Sinabs ``from_model`` row trains the ANN
(``train_kind="ann"``) and converts it; the Sinabs state-dict row saves the trained model's state dict
(``torch.save``) and compiles ``file.py:factory`` with ``weights``, as a user of snnc's file route does.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/frontends_table.py [--out rows.json] [--only TEXT]`` (about
a minute on the shared 2-core machine; ``--only`` runs the rows whose pattern contains TEXT). The snnTorch tutorial conv net on
Fashion-MNIST (28x28, the tutorial's sizes) is separate: ``bench/snntorch_tutorial_fmnist.py``.
"""
from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")

from frontend_helpers import digits_inputs, own_run, train_digits  # noqa: E402

import snnc  # noqa: E402
from snnc.backends.loihi.sim import load_program  # noqa: E402
from snnc.frontends import load_model  # noqa: E402

T = 10


def row(framework, pattern, route, build, kind="step", compile_kw=None, epochs=6, lr=3e-3, source=None,
        train_kind=None, convert=None, adapt=None):
    """One table row. ``kind``: the framework's own simulation (``own_run``); ``train_kind`` (default ``kind``)
    and ``convert`` (applied to the trained model, e.g. Sinabs' ``from_model`` of a trained ANN) where the model
    is trained in another form than it is simulated; ``source(model)``: what is compiled instead of the module
    (a NIR graph, or ``(target, compile kwargs)``, e.g. a ``file.py:factory`` and its ``weights``); ``adapt``:
    ``adapt_semantics`` options of the documented route for a refusal whose message does not name
    ``--allow-semantic-change`` (the MaxPool2d fix ``maxpool=avg``)."""
    out = {"framework": framework, "pattern": pattern, "route": route}
    t0 = time.time()
    torch.manual_seed(0)
    try:
        model = build()
        model = train_digits(model, T, kind=train_kind or kind, flatten=False, epochs=epochs, lr=lr)
        if convert:
            model = convert(model)
    except Exception as e:  # noqa: BLE001
        out.update(compiles=f"no (training failed: {type(e).__name__}: {e})")
        return out
    x, xs, y = digits_inputs(T, flatten=False)
    with torch.no_grad():
        own = own_run(model, xs, kind).sum(0).argmax(1).numpy()
    out["fw_acc"] = float((own == y).mean())
    tmp = Path(tempfile.mkdtemp())
    extra = {}
    try:
        target = source(model) if source else model
        if isinstance(target, tuple):
            target, extra = target
    except Exception as e:  # noqa: BLE001 - an exporter or loader failing is the result
        out.update(compiles=f"no: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        return out
    attempts = [("as is", dict(compile_kw or {}, **extra))]
    try:
        for label, kw in attempts:
            try:
                rep = snnc.compile(target, input_shape=(1, 8, 8), num_steps=T, out_dir=tmp / "o", data="digits",
                                   force=True, **kw)
            except Exception as e:  # noqa: BLE001 - the refusal message is the result
                msg = f"{type(e).__name__}: {str(e).splitlines()[0]}"
                if label != "as is":  # a route that fails too: its own result
                    out.setdefault("results", {})[label] = {"error": msg}
                    continue
                out["refused"] = msg
                if adapt and not kw.get("allow_semantic_change"):
                    attempts.append((f"--allow-semantic-change, adapt_semantics:{adapt}", dict(
                        kw, allow_semantic_change=True, passes=f"adapt_semantics:{adapt},fold_bn,quantize")))
                    attempts.append((f"adapt_semantics:{adapt} fine-tuned", dict(
                        kw, allow_semantic_change=True,
                        passes=f"adapt_semantics:{adapt};finetune_epochs=2,fold_bn,quantize")))
                elif "allow-semantic-change" in str(e) and not kw.get("allow_semantic_change"):
                    attempts.append(("--allow-semantic-change", dict(kw, allow_semantic_change=True)))
                    attempts.append(("adapt_semantics fine-tuned", dict(
                        kw, allow_semantic_change=True, passes="adapt_semantics:finetune_epochs=2,fold_bn,quantize")))
                continue
            comp = load_program(tmp / "o").run(x).scores().argmax(1)
            for n in rep.get("model", {}).get("notes", []):  # e.g. the Sinabs state buffers not loaded
                if "state buffer" in n and "note" not in out:
                    out["note"] = "snnc's note: " + n.replace(str(tmp), "").split(": ", 1)[-1]
            res = {"agreement": float((own == comp).mean()), "chip_acc": float((comp == y).mean()),
                   "checks": [c["check"] for c in rep.get("checks", [])]}
            ad = [e for e in rep["pipeline"] if e["pass"] == "adapt_semantics"]
            if ad and "accuracy_finetuned" in ad[0]["notes"]:
                res["finetune"] = {k: ad[0]["notes"][k] for k in (
                    "accuracy_source", "accuracy_converted", "accuracy_finetuned", "agreement_converted",
                    "agreement_finetuned", "finetune_samples", "samples_held_out") if k in ad[0]["notes"]}
            out.setdefault("results", {})[label] = res
        ok = [k for k, v in out.get("results", {}).items() if "error" not in v]
        out["compiles"] = "yes" if "as is" in ok else (
            "with --allow-semantic-change" + (f" (adapt_semantics:{adapt})" if adapt else "") if ok else "no")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["seconds"] = round(time.time() - t0, 1)
    return out


def builds():
    rows = []
    import snntorch as snn

    def mlp(neuron):
        return lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 48), neuron(), nn.Linear(48, 10), neuron())

    rows.append(dict(framework="snnTorch", pattern="Sequential, Leaky reset zero", route="snnc.compile(module)",
                     build=mlp(lambda: snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero"))))
    rows.append(dict(framework="snnTorch", pattern="Sequential, Leaky default (subtract)",
                     route="snnc.compile(module)", build=mlp(lambda: snn.Leaky(beta=0.9, init_hidden=True))))
    rows.append(dict(framework="snnTorch", pattern="Sequential, Synaptic reset zero", route="snnc.compile(module)",
                     build=mlp(lambda: snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True, reset_mechanism="zero"))))

    class RNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 48),
                                     snn.RLeaky(beta=0.9, linear_features=48, init_hidden=True, reset_mechanism="zero"),
                                     nn.Linear(48, 10), snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero"))

        def forward(self, x):
            return self.net(x)
    rows.append(dict(framework="snnTorch", pattern="RLeaky (recurrent) reset zero", route="snnc.compile(module)",
                     build=RNet))

    class Loop(nn.Module):  # tutorial style: init_hidden=False, forward loops over time
        def __init__(self):
            super().__init__()
            self.fc1, self.lif1 = nn.Linear(64, 48), snn.Leaky(beta=0.9, reset_mechanism="zero")
            self.fc2, self.lif2 = nn.Linear(48, 10), snn.Leaky(beta=0.9, reset_mechanism="zero")

        def forward(self, x):
            m1, m2 = self.lif1.init_leaky(), self.lif2.init_leaky()
            rec = []
            for _ in range(T):
                spk1, m1 = self.lif1(self.fc1(x.flatten(1)), m1)
                spk2, m2 = self.lif2(self.fc2(spk1), m2)
                rec.append(spk2)
            return torch.stack(rec)
    rows.append(dict(framework="snnTorch", pattern="tutorial style: forward() loops over time, init_hidden=False, "
                     "reset zero", route="snnc.compile(module): the step is found by running forward once",
                     kind="loop", build=Loop))

    from snntorch import surrogate
    sg = surrogate.fast_sigmoid(slope=25)
    rows.append(dict(  # tutorial 6 (bench/snntorch_tutorial_net.py) sized for 8x8: 8 -> 4 -> 2
        framework="snnTorch", pattern="tutorial 6 conv net: Conv2d -> MaxPool2d -> Leaky (init_hidden, default "
        "subtract) x2 -> Linear -> Leaky(output=True), snntorch.utils.reset",
        route="snnc.compile(module); refused as is: --allow-semantic-change --passes adapt_semantics:maxpool=avg",
        kind="snntorch-reset", adapt="maxpool=avg", lr=1e-2, build=lambda: nn.Sequential(  # the tutorial's Adam lr
            nn.Conv2d(1, 12, 3, padding=1), nn.MaxPool2d(2), snn.Leaky(beta=0.5, spike_grad=sg, init_hidden=True),
            nn.Conv2d(12, 32, 3, padding=1), nn.MaxPool2d(2), snn.Leaky(beta=0.5, spike_grad=sg, init_hidden=True),
            nn.Flatten(), nn.Linear(32 * 2 * 2, 10),
            snn.Leaky(beta=0.5, spike_grad=sg, init_hidden=True, output=True))))
    rows.append(dict(framework="snnTorch", pattern="Sequential, Synaptic default (subtract), reset_delay=False",
                     route="snnc.compile(module)",
                     build=mlp(lambda: snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True, reset_delay=False))))

    class Braille(nn.Module):
        """The NIR paper's Braille RNN model as its snnTorch code writes it (paper/03_rnn/export_snntorch.py):
        explicit RSynaptic/Synaptic states from init_rsynaptic()/init_synaptic(), init_hidden=False, reset zero,
        its alpha/beta and surrogate; digits sizes (64 -> 48 -> 10). (Its subtract + reset_delay=False variant
        fails inside snnTorch 1.0 with init_rsynaptic() states, before snnc: RSynaptic subtracts a [B, 48] reset
        from the empty initial spike tensor.)"""

        def __init__(self):
            super().__init__()
            sg10 = surrogate.fast_sigmoid(slope=10)
            self.fc1 = nn.Linear(64, 48)
            self.lif1 = snn.RSynaptic(alpha=0.5, beta=0.85, linear_features=48, spike_grad=sg10,
                                      reset_mechanism="zero")
            self.fc2 = nn.Linear(48, 10)
            self.lif2 = snn.Synaptic(alpha=0.2, beta=0.95, spike_grad=sg10, reset_mechanism="zero")

        def forward(self, x):
            spk1, syn1, mem1 = self.lif1.init_rsynaptic()
            syn2, mem2 = self.lif2.init_synaptic()
            rec = []
            for _ in range(T):
                spk1, syn1, mem1 = self.lif1(self.fc1(x.flatten(1)), spk1, syn1, mem1)
                spk2, syn2, mem2 = self.lif2(self.fc2(spk1), syn2, mem2)
                rec.append(spk2)
            return torch.stack(rec)
    rows.append(dict(framework="snnTorch", pattern="explicit-state recurrent time loop (Braille RNN code): "
                     "RSynaptic -> Synaptic, init_hidden=False, states passed by hand, reset zero",
                     route="snnc.compile(module): the step is found by running forward once", kind="loop",
                     build=Braille))

    import norse.torch as nt
    p = nt.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0))
    rows.append(dict(framework="Norse", pattern="SequentialState, LIFBoxCell", route="snnc.compile(module)",
                     kind="state", lr=5e-3, build=lambda: nt.SequentialState(
                         nn.Flatten(), nn.Linear(64, 48), nt.LIFBoxCell(p), nn.Linear(48, 10), nt.LIFBoxCell(p))))
    pc = nt.LIFParameters(tau_syn_inv=torch.tensor(1000.0), tau_mem_inv=torch.tensor(500.0))
    rows.append(dict(framework="Norse", pattern="SequentialState, LIFCell (current-based)",
                     route="snnc.compile(module)", kind="state", lr=5e-3, build=lambda: nt.SequentialState(
                         nn.Flatten(), nn.Linear(64, 48), nt.LIFCell(pc), nn.Linear(48, 10), nt.LIFCell(pc))))
    rows.append(dict(framework="Norse", pattern="SequentialState, LIFCell, exported with norse to_nir",
                     route="norse.to_nir -> snnc --semantics norse", kind="state", lr=5e-3,
                     build=lambda: nt.SequentialState(nn.Flatten(), nn.Linear(64, 48), nt.LIFCell(pc),
                                                      nn.Linear(48, 10), nt.LIFCell(pc)),
                     source=lambda m: _input_direct(nt.to_nir(m, torch.zeros(1, 1, 8, 8)), semantics="norse")))

    from spikingjelly.activation_based import layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir
    sjb = lambda mk: lambda: nn.Sequential(layer.Flatten(), layer.Linear(64, 48), mk(), layer.Linear(48, 10), mk())  # noqa: E731
    rows.append(dict(framework="SpikingJelly", pattern="IFNode, hard reset (>= threshold)",
                     route="snnc.compile(module)", build=sjb(neuron.IFNode)))
    rows.append(dict(framework="SpikingJelly", pattern="LIFNode tau=2, hard reset", route="snnc.compile(module)",
                     build=sjb(lambda: neuron.LIFNode(tau=2.0))))
    rows.append(dict(framework="SpikingJelly", pattern="LIFNode soft reset (v_reset=None)",
                     route="snnc.compile(module)", build=sjb(lambda: neuron.LIFNode(tau=2.0, v_reset=None))))
    rows.append(dict(framework="SpikingJelly", pattern="IFNode, exported with export_to_nir",
                     route="export_to_nir(dt=1e-4) -> snnc --semantics spikingjelly", build=sjb(neuron.IFNode),
                     source=lambda m: _input_direct(export_to_nir(m, torch.zeros(1, 1, 8, 8)), semantics="spikingjelly")))

    from spikingjelly.activation_based import functional, surrogate as sj_surrogate

    class CSNN(nn.Module):  # SpikingJelly's conv tutorial network, multi-step, sized for 8x8 (8 -> 4 -> 2)
        def __init__(self, channels=8):
            super().__init__()
            self.T = T
            self.conv_fc = nn.Sequential(
                layer.Conv2d(1, channels, kernel_size=3, padding=1, bias=False), layer.BatchNorm2d(channels),
                neuron.IFNode(surrogate_function=sj_surrogate.ATan()), layer.MaxPool2d(2, 2),
                layer.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False), layer.BatchNorm2d(channels),
                neuron.IFNode(surrogate_function=sj_surrogate.ATan()), layer.MaxPool2d(2, 2),
                layer.Flatten(), layer.Linear(channels * 2 * 2, channels * 4 * 4, bias=False),
                neuron.IFNode(surrogate_function=sj_surrogate.ATan()),
                layer.Linear(channels * 4 * 4, 10, bias=False), neuron.IFNode(surrogate_function=sj_surrogate.ATan()))
            functional.set_step_mode(self, step_mode="m")

        def forward(self, x):
            x_seq = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
            return self.conv_fc(x_seq).mean(0)
    rows.append(dict(framework="SpikingJelly", pattern="conv tutorial CSNN as written: multi-step ('m'), forward "
                     "repeats the image T times, returns the firing rate; BatchNorm2d, MaxPool2d of spikes",
                     route="snnc.compile(module): traced through its submodule conv_fc", kind="rate", build=CSNN))

    import sinabs
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, SingleSpike
    sq = lambda **k: lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 48), sl.IAFSqueeze(num_timesteps=T, **k),  # noqa: E731
                                           nn.Linear(48, 10), sl.IAFSqueeze(num_timesteps=T, **k))
    rows.append(dict(framework="Sinabs", pattern="IAFSqueeze default (MultiSpike, subtract)",
                     route="snnc.compile(module)", kind="sinabs-squeeze", build=sq()))
    rows.append(dict(framework="Sinabs", pattern="IAFSqueeze SingleSpike + MembraneReset",
                     route="snnc.compile(module)", kind="sinabs-squeeze",
                     build=sq(spike_fn=SingleSpike, reset_fn=MembraneReset())))
    rows.append(dict(framework="Sinabs", pattern="IAFSqueeze default, exported with sinabs.to_nir",
                     route="sinabs.to_nir -> snnc --semantics sinabs", kind="sinabs-squeeze", build=sq(),
                     source=lambda m: _input_direct(sinabs.to_nir(m, torch.zeros(T, 1, 8, 8)), semantics="sinabs")))
    from sinabs.from_torch import from_model
    rows.append(dict(framework="Sinabs", pattern="from_model(ann) of a trained ANN (Conv2d, ReLU, AvgPool2d, Linear; "
                     "no bias), add_spiking_output=True: IAFSqueeze default (MultiSpike, subtract)",
                     route="snnc.compile(network): traced through its spiking_model", kind="sinabs-squeeze",
                     train_kind="ann", build=lambda: nn.Sequential(
                         nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 48, bias=False), nn.ReLU(), nn.Linear(48, 10, bias=False)),
                     convert=lambda ann: from_model(ann, input_shape=(1, 8, 8), num_timesteps=T,
                                                    add_spiking_output=True, synops=False)))
    factory = Path(tempfile.mkdtemp()) / "sinabs_digits_net.py"
    atexit.register(shutil.rmtree, factory.parent, True)
    factory.write_text(SINABS_FACTORY)
    rows.append(dict(framework="Sinabs", pattern="IAFSqueeze default trained with BPTT, torch.save(state_dict) "
                     "(batch-shaped v_mem buffers)", route="snnc.compile('net.py:make_model', weights='w.pt')",
                     kind="sinabs-squeeze", build=lambda: _factory(factory)(),
                     source=lambda m: _saved(m, factory)))
    return rows


SINABS_FACTORY = f"""
import torch.nn as nn
import sinabs.layers as sl


def make_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), sl.IAFSqueeze(num_timesteps={T}), nn.Linear(48, 10),
                         sl.IAFSqueeze(num_timesteps={T}))


make_model.input_shape = (1, 8, 8)
make_model.num_steps = {T}
"""


def _factory(path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_model


def _saved(model, factory):
    """The trained model's state dict saved as a user does (its v_mem buffers have the last batch's shape);
    compiled as ``file.py:factory`` with ``weights``."""
    sd = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items() if k.endswith("v_mem")}
    assert shapes and all(len(s) == 2 for s in shapes.values()), shapes  # [batch, features]: batch-shaped
    torch.save(sd, factory.parent / "w.pt")
    return f"{factory}:make_model", {"weights": str(factory.parent / "w.pt")}


def _input_direct(graph, semantics=None):
    """A foreign NIR graph for direct (analog) input, as the framework model was trained, read with the declared
    exporter's conventions (``--semantics``)."""
    g, _, _ = load_model(graph, dt=None, semantics=semantics)
    g.metadata["snnc.input_encoding"] = "direct"
    return g


def braille_row():
    """The NIR paper's Braille RNN (snnTorch export): snnc's float reference vs loihi-sim on random spikes."""
    from snnc.ir.reference import run_graph
    fx = ROOT.parent / "shared" / "fixtures" / "nir-paper" / "braille_noDelay_noBias_subtract.nir"
    if not fx.is_file():
        return None
    out = {"framework": "NIR file", "pattern": "Braille RNN (recurrent CubaLIF, snnTorch export)",
           "route": "snnc compile file.nir --data events:PATH"}
    rng = np.random.default_rng(0)
    Tb = 50
    frames = (rng.random((200, Tb, 12)) < 0.2).astype(np.float32)
    tmp = Path(tempfile.mkdtemp())
    np.savez(tmp / "ev.npz", frames=frames, labels=rng.integers(0, 7, 200))
    res = {}
    try:
        for label, reset, allow in (("as is (NIR: reset to v_reset = 0)", None, False),
                                    ("--reset subtract --allow-semantic-change", "subtract", True)):
            g, _, _ = load_model(fx, reset=reset)
            rep = snnc.compile(fx, num_steps=Tb, out_dir=tmp / "o", data=f"events:{tmp}/ev.npz", force=True,
                               reset=reset, allow_semantic_change=allow)
            xs = np.ascontiguousarray(frames.transpose(1, 0, 2))
            ref, _ = run_graph(g, torch.from_numpy(xs), None)
            own = ref.sum(0).argmax(1).numpy()
            comp = load_program(tmp / "o").run(xs).scores().argmax(1)
            res[label] = {"agreement": float((own == comp).mean()),
                          "checks": [c["check"] for c in rep.get("checks", [])]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["results"] = res
    out["compiles"] = "yes"
    out["note"] = ("no Braille data ships here: 200 random spike inputs (p = 0.2); agreement is snnc's float "
                   "reference of the source semantics vs loihi-sim (snnTorch's own RNN is not rebuilt); one event "
                   "set is a test split, so it compiles without calibration (check NO_CALIBRATION)")
    return out


def markdown(rows) -> str:
    lines = ["| framework | model pattern | route | compiles | agreement with the framework (loihi-sim) | "
             "framework acc | chip acc | notes |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        res = r.get("results", {})
        parts = [f"{k}: {100 * v['agreement']:.1f}%" if "agreement" in v else f"{k}: failed ({v['error']})"
                 for k, v in res.items()]
        chip = [f"{100 * v['chip_acc']:.1f}%" for v in res.values() if "chip_acc" in v]
        notes = []
        if "refused" in r:
            notes.append("as is: refused (" + (r["refused"][:300] if r.get("compiles") == "no" else
                                                r["refused"].split(":")[0]) + ")")
        for k, v in res.items():
            if "finetune" in v:
                f = v["finetune"]
                notes.append(f"fine-tune held-out acc: source {100 * f['accuracy_source']:.1f}%, converted "
                             f"{100 * f['accuracy_converted']:.1f}%, fine-tuned {100 * f['accuracy_finetuned']:.1f}%"
                             + (f"; held-out agreement with the source: converted {100 * f['agreement_converted']:.1f}%"
                                f", fine-tuned {100 * f['agreement_finetuned']:.1f}%" if "agreement_finetuned" in f
                                else ""))
        if r.get("note"):
            notes.append(r["note"])
        lines.append(f"| {r['framework']} | {r['pattern']} | {r['route']} | {r.get('compiles')} | "
                     f"{'; '.join(parts) or '-'} | {100 * r['fw_acc']:.1f}% | " if "fw_acc" in r else
                     f"| {r['framework']} | {r['pattern']} | {r['route']} | {r.get('compiles')} | "
                     f"{'; '.join(parts) or '-'} | - | ")
        lines[-1] += f"{' / '.join(chip) or '-'} | {'; '.join(notes)} |"
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--only", default=None, help="only the rows whose pattern contains this text (no Braille row)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for spec in builds():
        if args.only and args.only not in spec["pattern"]:
            continue
        r = row(**spec)
        print(json.dumps(r), flush=True)
        rows.append(r)
    b = None if args.only else braille_row()
    if b:
        print(json.dumps(b), flush=True)
        rows.append(b)
    print(markdown(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
