"""Benchmark: snnc's energy and time-per-step model against SANA-FE's Loihi architecture, network for
network, on the same core map and the same input.

Usage::

    make setup-bench      # pip install -e '.[bench]' -c constraints.txt  (sanafe==2.2.9)
    .venv/bin/python bench/bench_energy.py [--samples 10] [--configs auto,discrete,pruned,latency] [--json PATH]

What it does, per configuration of the bundled Fashion-MNIST CNN (``models/fmnist_cnn.pt``, calibrated on
256 Fashion-MNIST training images, T = 8):

- ``auto``: pipeline ``fold_bn,quantize``, ``formats="auto"`` (population axons where they need fewer cores);
- ``discrete``: the same graph, ``formats="discrete"`` (discrete axons everywhere);
- ``pruned``: pipeline ``fold_bn,prune_channels:ratio=0.5,quantize``, ``formats="auto"``;
- ``latency``: what a user gets from ``snnc compile fmnist_cnn --data fashion-mnist --objective latency``
  (:func:`snnc.driver.compiler.compile_model` into a temporary folder, evaluated on 100 test images, read back
  with :func:`~snnc.backends.loihi.sim.load_program`); the bench prints SANA-FE's time per inference
  against ``auto`` (the default objective, cores).

1. loihi-sim (:class:`~snnc.backends.loihi.sim.Program`) runs the first ``--samples`` test images, one at a
   time with ``record=True``, and :func:`snnc.backends.loihi.energy.measure` gives, per image, the counts,
   snnc's energy (Davies 2018 convention), its SANA-FE-convention energy and its time model (basis
   ``trace``). One more run of all images without a trace gives the figure a compile report holds
   (basis ``mean``).
2. The same network is built in SANA-FE 2.2.9 (``sanafe.load_loihi()``, the wheel's
   ``sanafe/examples/loihi.yaml``) neuron by neuron and synapse by synapse: every snnc compartment is a
   ``leaky_integrate_fire`` neuron on soma ``loihi_lif`` with snnc's parameters in units of snnc's
   integer v / 64 (``threshold`` = vThMant, ``leak_decay`` = (4096 - dv) / 4096, ``input_decay`` =
   (4096 - (du + 1)) / 4096, ``bias`` = (bias_mant << bias_exp) / 64, hard reset to 0); every non-zero
   integer weight is one connection of weight w x 2^weight_exp on the synapse unit
   :func:`~snnc.backends.loihi.energy.synapse_unit` names (conv / sparse / dense); every snnc core is one
   SANA-FE core at the same tile position of the 8 x 4 mesh (snnc numbers tiles row-major, SANA-FE
   column-major: snnc tile (x, y) -> SANA-FE tile 4x + y). The first layer's input is what loihi-sim's
   host writes: its per-sample bias (:meth:`Program.host_bias`, divided by 64) during the T input steps,
   the group's constant bias after them; every group's bias is 0 before its ``bias_from`` step, as in
   loihi-sim. SANA-FE runs step by step (``chip.sim(1)``, timing model ``detailed``, its default; one
   processing thread), ``chip.reset()`` between images, with spike, perf and message traces.
3. Printed side by side per image and in total: spikes, SynOps, spike messages, neuron updates (snnc's
   active count, the same trace counted with SANA-FE's rule, SANA-FE's ``updated``), the spike rasters'
   agreement, energy per inference (total; synapse / neuron / message), time per step and per inference
   (snnc's model; SANA-FE detailed, and SANA-FE's simple model computed from its message trace), and the
   slowest cores' time per step in both. Goal lines: energy within 10 %, time per step within 25 %.

SANA-FE's LIF equals Lava's (and loihi-sim's) bit for bit only with no current memory (du = 4095),
non-negative weight exponents and no 24-bit wrap or clip; the bench prints, per configuration, where it
leaves that regime. The load average at start and end is printed: the machine is shared. ``--json PATH``
writes every figure. SANA-FE is GPL-3.0 and only this benchmark imports it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from snnc import data as D
from snnc.backends.loihi.compile import compile_graph, source_core_vector
from snnc.backends.loihi.energy import measure, synapse_unit, time_model
from snnc.backends.loihi.sim import Program, slice_counts_for
from snnc.frontend import load_model
from snnc.ir.ops import apply_ops
from snnc.passes import PassContext, Pipeline
from snnc.targets import load_target

REPO = Path(__file__).resolve().parents[1]
SEED, CALIB_N, T_STEPS = 0, 256, 8
CONFIGS = {"auto": ("fold_bn,quantize", "auto"), "discrete": ("fold_bn,quantize", "discrete"),
           "pruned": ("fold_bn,prune_channels:ratio=0.5,quantize", "auto"),
           "latency": ("fold_bn,quantize", "objective latency")}
UNIT_HW = {"conv": "loihi_conv_synapse", "sparse": "loihi_sparse_synapse", "dense": "loihi_dense_synapse"}
CHUNK = 1024          # source neurons per synapse-extraction and connect call


@contextlib.contextmanager
def quiet():
    """Silence SANA-FE's C++ prints (stdout and stderr file descriptors) while it runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_snnc(prog: Program, x, record: bool):
    """loihi-sim on ``x`` (its default kernel)."""
    return prog.run(x, record=record)


def regime(prog: Program, res) -> list[str]:
    """Where the configuration leaves the regime in which SANA-FE's LIF equals Lava's bit for bit."""
    out = []
    one = 2 ** prog.fp["decay_bits"]
    for name, g in prog.groups.items():
        du = g.du_eff if isinstance(g.du_eff, int) else int(g.du_eff.min())
        if du < one:
            out.append(f"{name}: du = {du - prog.fp['ds_offset']} < 4095 (current memory): SANA-FE decays u in "
                       "floating point without Lava's truncation toward zero")
        for p in g.projections:
            if not p.host and p.weight_exp < 0:
                out.append(f"{name} <- {p.source}: weight_exp {p.weight_exp} < 0: Lava floors the shifted sum, "
                           "SANA-FE adds w x 2^e per synapse")
            if not p.host and p.delay > 0:
                out.append(f"{name} <- {p.source}: delay {p.delay}: this bench builds no SANA-FE delays")
        ov = res.overflow.get(name, {})
        for key, what in (("u_wrap_24bit", "24-bit u wrapped"), ("v_saturated_24bit", "24-bit v clipped")):
            if ov.get(key):
                out.append(f"{name}: {what} {ov[key]} times (SANA-FE neither wraps nor clips)")
    return out


def edges(prog: Program, p: dict):
    """Yield ``(src, dst, w)`` arrays (C-order indices, integer weight sums) of an on-chip projection,
    ``CHUNK`` source neurons at a time, by running its ops on one-hot inputs (every non-zero result is
    one connection)."""
    w = torch.as_tensor(np.asarray(prog.arrays[p["weight_key"]], np.float64))
    src_shape = tuple(p["source_shape"])
    n = int(np.prod(src_shape))
    with torch.no_grad():
        for a in range(0, n, CHUNK):
            b = min(n, a + CHUNK)
            e = torch.zeros((b - a, n), dtype=torch.float64)
            e[torch.arange(b - a), torch.arange(a, b)] = 1.0
            out = apply_ops(e.reshape((b - a,) + src_shape), p["ops"], w).reshape(b - a, -1)
            i, j = torch.nonzero(out, as_tuple=True)
            yield i.numpy() + a, j.numpy(), out[i, j].numpy()


def sf_core_index(k: int, chip: dict) -> int:
    """SANA-FE core (index in ``arch.cores()``) at snnc core ``k``'s tile position (one chip)."""
    t, off = divmod(k, chip["cores_per_tile"])
    x, y = t % chip["tiles_x"], t // chip["tiles_x"]
    return (x * chip["tiles_y"] + y) * chip["cores_per_tile"] + off


class SanaFENet:
    """snnc's configuration as a SANA-FE network on ``sanafe.load_loihi()``."""

    def __init__(self, prog: Program, sanafe):
        cfg, chip = prog.config, prog.target["chip"]
        if len(cfg["cores"]) > chip["cores"]:
            raise RuntimeError(f"{len(cfg['cores'])} cores: SANA-FE's loihi.yaml has one chip of {chip['cores']}")
        if any(g.get("padding") for g in cfg["groups"]):  # its compartments without neurons are not built here
            raise RuntimeError("a padded layout (group 'padding'): this build has no padding compartments")
        self.prog, self.sanafe = prog, sanafe
        self.arch = sanafe.load_loihi()
        acores = self.arch.cores()
        self.core_of_sf = {sf_core_index(c["core"], chip): c["core"] for c in cfg["cores"]}
        net = sanafe.Network()
        self.groups, self.adj, self.synapses = {}, {}, 0
        t0 = time.perf_counter()
        for g in cfg["groups"]:
            pg = prog.groups[g["name"]]
            units = [synapse_unit(p) for p in g["projections"] if not p["host"]]
            attrs = {"threshold": float(g["vth_mant"]) if not isinstance(pg.vth, torch.Tensor) else 0.0,
                     "reset": 0.0, "reset_mode": "hard", "bias": 0.0}
            attrs.update(self._decays(pg.du_eff, pg.dv_eff))
            sg = net.create_neuron_group(g["name"], int(g["size"]), model_attributes=attrs,
                                         default_synapse_hw_name=UNIT_HW[units[0] if units else "sparse"],
                                         log_spikes=True, soma_hw_name="loihi_lif")
            per_neuron = isinstance(pg.vth, torch.Tensor) or isinstance(pg.du_eff, torch.Tensor)
            if per_neuron:  # per-channel thresholds or per-neuron time constants
                vth = pg.vth.reshape(-1) if isinstance(pg.vth, torch.Tensor) else None
                du = pg.du_eff.reshape(-1) if isinstance(pg.du_eff, torch.Tensor) else None
                dv = pg.dv_eff.reshape(-1) if isinstance(pg.dv_eff, torch.Tensor) else None
                for i, nrn in enumerate(sg.neurons):
                    a = {}
                    if vth is not None:
                        a["threshold"] = float(int(vth[i]) >> prog.fp["vth_shift"])
                    if du is not None:
                        a.update(self._decays(int(du[i]), int(dv[i])))
                    nrn.set_attributes(model_attributes=a)
            self.groups[g["name"]] = sg
        for g in cfg["groups"]:
            dst = self.groups[g["name"]]
            for p in g["projections"]:
                if p["host"]:
                    continue
                if p["source"] not in self.groups:
                    raise RuntimeError("spike input from the host: not built by this bench")
                for nrn in dst.neurons:
                    nrn.set_attributes(default_synapse_hw_name=UNIT_HW[synapse_unit(p)])
                scale = 2.0 ** p["weight_exp"]
                rows, cols = [], []
                for s, t, w in edges(prog, p):
                    dst_pairs = list(zip(s.tolist(), t.tolist()))
                    self.groups[p["source"]].connect_neurons_sparse(dst, {"weight": (w * scale).tolist()}, dst_pairs)
                    self.synapses += len(s)
                    rows.append(t)
                    cols.append(s)
                r, c = np.concatenate(rows), np.concatenate(cols)
                a = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(int(g["size"]), int(np.prod(p["source_shape"]))))
                self.adj.setdefault(g["name"], []).append((p["source"], a))
        for g in cfg["groups"]:
            cv = source_core_vector(g)
            for i, nrn in enumerate(self.groups[g["name"]].neurons):
                nrn.map_to_core(acores[sf_core_index(int(cv[i]), chip)])
        self.chip = sanafe.SpikingChip(self.arch)
        with quiet():
            self.chip.load(net)
        self.mapped = self.chip.mapped_neuron_groups
        self.build_s = time.perf_counter() - t0
        self.net = net

    @staticmethod
    def _decays(du_eff, dv_eff) -> dict:
        return {"input_decay": max(4096 - int(du_eff), 0) / 4096.0, "leak_decay": (4096 - int(dv_eff)) / 4096.0}

    def biases(self, x1) -> list[dict]:
        """Per step, the bias (SANA-FE units) of every group: ``[{group: float64 [size]}]``."""
        prog, cfg = self.prog, self.prog.config
        L, T = int(cfg["latency_steps"]), int(cfg["num_steps"])
        out = [dict() for _ in range(L)]
        for g in cfg["groups"]:
            pg = prog.groups[g["name"]]
            const = pg.bias_const.reshape(-1).to(torch.float64).numpy() / 64.0
            host = None
            if any(p.host for p in pg.projections):
                hb, _ = prog.host_bias(pg, torch.as_tensor(x1, dtype=torch.float64))
                host = [b.reshape(-1).to(torch.float64).numpy() / 64.0 for b in hb]
            off, start = g["offset"], g.get("bias_from", g["offset"])
            for t in range(L):
                if t < start:
                    out[t][g["name"]] = np.zeros(g["size"])
                elif host is not None and off <= t < off + T:
                    out[t][g["name"]] = host[t - off]
                else:
                    out[t][g["name"]] = const
        return out

    def run_image(self, x1) -> dict:
        """One image, step by step: per step the perf figures, spikes per (group, neuron), messages."""
        cfg = self.prog.config
        L = int(cfg["latency_steps"])
        ncores = len(cfg["cores"])
        with quiet():
            self.chip.reset()
        current = {g: None for g in self.groups}
        steps = []
        for t, bias in enumerate(self.biases(x1)):
            for name, b in bias.items():
                prev = current[name]
                changed = np.arange(len(b)) if prev is None else np.nonzero(b != prev)[0]
                mg = self.mapped[name]
                for i in changed:
                    mg[int(i)].set_attributes(model_attributes={"bias": float(b[i])})
                current[name] = b
            with quiet():
                r = self.chip.sim(1, timing_model="detailed", processing_threads=1, perf_trace=True,
                                  spike_trace=True, message_trace=True)
            pt = r["perf_trace"]
            spikes = {}
            for a in r["spike_trace"][0]:
                spikes.setdefault(a.group_name, []).append(a.neuron_offset)
            gen, proc = np.zeros(ncores), np.zeros(ncores)
            msgs = 0
            for m in r["message_trace"][0]:
                gen[self.core_of_sf[m["src_core_id"]]] += m["generation_delay"]
                if not m["placeholder"]:
                    msgs += 1
                    proc[self.core_of_sf[m["dest_core_id"]]] += m["processing_delay"]
            steps.append({"fired": int(pt["fired"][0]), "synops": int(pt["spikes"][0]),
                          "updated": int(pt["updated"][0]),
                          "messages": msgs, "sim_time_s": float(r["sim_time"]),
                          "energy_J": {k: float(v) for k, v in r["energy"].items()},
                          "spikes": spikes, "neuron_side_s": gen, "message_side_s": proc})
        assert len(steps) == L
        return steps


def sanafe_rule_updates(prog: Program, res, sfnet: SanaFENet, biases: list[dict]) -> int:
    """Neuron updates of one recorded loihi-sim run counted with SANA-FE's rule (src/models.cpp
    LoihiLifModel::update): v non-zero before the step, synaptic input received, or a non-zero bias."""
    total = 0
    L = int(prog.config["latency_steps"])
    for g in prog.config["groups"]:
        name = g["name"]
        v = res.trace[name]["v"][0].reshape(L, -1).numpy()
        for t in range(L):
            upd = np.abs(biases[t][name]) > 0
            if t > 0:
                upd |= v[t - 1] != 0
                for src, a in sfnet.adj.get(name, []):
                    s = res.trace[src]["spikes"][0, t - 1].reshape(-1).numpy().astype(np.float64)
                    upd |= (a @ s) > 0
            total += int(upd.sum())
    return total


def raster_mismatch(res, steps: list) -> int:
    """(step, neuron) pairs where loihi-sim's and SANA-FE's spikes differ (one image)."""
    bad = 0
    for name, tr in res.trace.items():
        s = tr["spikes"][0].reshape(len(steps), -1).numpy()
        for t, st in enumerate(steps):
            mine = set(np.nonzero(s[t])[0].tolist())
            bad += len(mine.symmetric_difference(st["spikes"].get(name, [])))
    return bad


def snnc_image(prog: Program, counts, x1) -> tuple:
    """One image through loihi-sim with a trace: the result, its ``measure`` and every core's time
    (:func:`time_model` with all cores in ``per_core``)."""
    res = run_snnc(prog, x1, record=True)
    return res, measure(prog, res, counts), time_model(prog, res, counts, top=len(prog.config["cores"]))


def pct(a: float, b: float) -> str:
    return f"{(a / b - 1) * 100:+.1f}%" if b else "n/a"


def bench_config(label: str, prog: Program, x, sanafe) -> dict:
    cfg = prog.config
    counts = slice_counts_for(prog)
    t0 = time.perf_counter()
    sf = SanaFENet(prog, sanafe)
    print(f"\n== {label}: {len(cfg['cores'])} cores, {sum(g['size'] for g in cfg['groups']):,} compartments, "
          f"{sf.synapses:,} synapses; SANA-FE network built and loaded in {sf.build_s:.1f} s")
    res_all = run_snnc(prog, x, record=False)
    reg = regime(prog, res_all)
    print("  regime: " + ("inside (du = 4095, weight exponents >= 0, no wrap or clip): spikes must agree bit for bit"
                          if not reg else "OUTSIDE: " + "; ".join(reg)))
    L = int(cfg["latency_steps"])
    imgs = []
    hdr = (f"  {'img':>3} | {'spikes snnc/SF':>15} | {'SynOps snnc/SF':>19} | {'messages snnc/SF':>16} | "
           f"{'updates active/SF-rule/SF':>25} | {'raster':>6} | {'E uJ snnc/snnc-SFconv/SF':>24} | "
           f"{'t/inf us snnc/SF/SF-simple':>26}")
    print(hdr)
    for i in range(len(x)):
        res, m, tm_all = snnc_image(prog, counts, x[i:i + 1])
        steps = sf.run_image(x[i:i + 1])
        biases = sf.biases(x[i:i + 1])
        a, e, es, tm = m["per_inference"], m["energy"], m["energy_sanafe"], m["time"]
        sfe = {k: sum(s["energy_J"][k] for s in steps) * 1e12 for k in steps[0]["energy_J"]}
        bar = tm["barrier_s"]
        simple = [max(s["neuron_side_s"].max(), s["message_side_s"].max()) + bar for s in steps]
        row = {
            "snnc": {"spikes": a["spikes"], "synops": a["synops"], "messages": a["spike_messages"],
                     "updates_active": a["neuron_updates_active"],
                     "updates_all": a["neuron_updates_active"] + a["neuron_updates_inactive"],
                     "updates_sanafe_rule": sanafe_rule_updates(prog, res, sf, biases),
                     "energy_pJ": e["per_inference_pJ"], "energy_breakdown_pJ": e["breakdown"],
                     "energy_sanafe_convention_pJ": es["per_inference_pJ"],
                     "energy_sanafe_convention_breakdown_pJ": es["breakdown"],
                     "time_per_step_s": tm["time_per_step_s"], "time_per_inference_s": tm["time_per_inference_s"],
                     "time_per_inference_s_overlap": tm["time_per_inference_s_overlap"],
                     "per_core": tm_all["per_core"]},
            "sanafe": {"spikes": sum(s["fired"] for s in steps), "synops": sum(s["synops"] for s in steps),
                       "messages": sum(s["messages"] for s in steps), "updated": sum(s["updated"] for s in steps),
                       "energy_pJ": sfe["total"],
                       "energy_breakdown_pJ": {"synapse_pJ": sfe["synapse"], "neuron_pJ": sfe["soma"] + sfe["dendrite"],
                                               "message_pJ": sfe["network"]},
                       "time_per_step_s": {"mean": float(np.mean([s["sim_time_s"] for s in steps])),
                                           "max": float(np.max([s["sim_time_s"] for s in steps]))},
                       "time_per_inference_s": float(sum(s["sim_time_s"] for s in steps)),
                       "time_per_inference_s_simple": float(sum(simple)),
                       "neuron_side_s_per_step": (sum(s["neuron_side_s"] for s in steps) / L).tolist(),
                       "message_side_s_per_step": (sum(s["message_side_s"] for s in steps) / L).tolist()},
            "raster_mismatches": raster_mismatch(res, steps),
        }
        imgs.append(row)
        s_, f_ = row["snnc"], row["sanafe"]
        print(f"  {i:>3} | {s_['spikes']:>7,.0f}/{f_['spikes']:<7,} | {s_['synops']:>9,.0f}/{f_['synops']:<9,} | "
              f"{s_['messages']:>7,.0f}/{f_['messages']:<8,} | {s_['updates_active']:>7,.0f}/"
              f"{s_['updates_sanafe_rule']:>7,}/{f_['updated']:<9,} | {row['raster_mismatches']:>6} | "
              f"{s_['energy_pJ'] / 1e6:>6.2f}/{s_['energy_sanafe_convention_pJ'] / 1e6:>6.2f}/"
              f"{f_['energy_pJ'] / 1e6:<10.2f} | {s_['time_per_inference_s'] * 1e6:>7.1f}/"
              f"{f_['time_per_inference_s'] * 1e6:>7.1f}/{f_['time_per_inference_s_simple'] * 1e6:<9.1f}")
    tot = summarize(imgs)
    mean_basis = measure(prog, res_all, counts)["time"]
    print_totals(tot, mean_basis, L)
    wall = time.perf_counter() - t0
    print(f"  wall time for this configuration: {wall:.1f} s")
    return {"cores": len(cfg["cores"]), "synapses": sf.synapses, "regime": reg, "images": imgs, "mean": tot,
            "snnc_time_mean_basis": {k: mean_basis[k] for k in ("time_per_step_s", "time_per_inference_s")},
            "sanafe_build_s": sf.build_s, "wall_s": wall}


def summarize(imgs: list) -> dict:
    """Per-inference means over the images (maxima for the step-time maxima)."""
    def mean(side, key):
        return float(np.mean([r[side][key] for r in imgs]))

    def mean_d(side, key):
        return {k: float(np.mean([r[side][key][k] for r in imgs])) for k in imgs[0][side][key]}

    out = {"snnc": {k: mean("snnc", k) for k in ("spikes", "synops", "messages", "updates_active", "updates_all",
                                                  "updates_sanafe_rule", "energy_pJ", "energy_sanafe_convention_pJ",
                                                  "time_per_inference_s", "time_per_inference_s_overlap")},
           "sanafe": {k: mean("sanafe", k) for k in ("spikes", "synops", "messages", "updated", "energy_pJ",
                                                    "time_per_inference_s", "time_per_inference_s_simple")},
           "raster_mismatches": int(sum(r["raster_mismatches"] for r in imgs))}
    out["snnc"]["energy_breakdown_pJ"] = mean_d("snnc", "energy_breakdown_pJ")
    out["snnc"]["energy_sanafe_convention_breakdown_pJ"] = mean_d("snnc", "energy_sanafe_convention_breakdown_pJ")
    out["sanafe"]["energy_breakdown_pJ"] = mean_d("sanafe", "energy_breakdown_pJ")
    for side in ("snnc", "sanafe"):
        out[side]["time_per_step_s"] = {"mean": float(np.mean([r[side]["time_per_step_s"]["mean"] for r in imgs])),
                                        "max": float(np.max([r[side]["time_per_step_s"]["max"] for r in imgs]))}
    # slowest cores: snnc's per-core model against SANA-FE's neuron + message side on the same core
    ncores = len(imgs[0]["sanafe"]["neuron_side_s_per_step"])
    side = {k: np.mean([r["sanafe"][f"{k}_side_s_per_step"] for r in imgs], 0) for k in ("neuron", "message")}
    sf_core = side["neuron"] + side["message"]
    snnc_core = np.zeros(ncores)
    for r in imgs:
        for c in r["snnc"]["per_core"]:
            snnc_core[c["core"]] += c["time_per_step_s_mean"] / len(imgs)
    top = [int(c) for c in np.argsort(-sf_core, kind="stable")[:3]]
    out["slowest_cores"] = [{"core": c, "sanafe_s_per_step": float(sf_core[c]),
                             "sanafe_neuron_side_s": float(side["neuron"][c]),
                             "sanafe_message_side_s": float(side["message"][c]),
                             "snnc_s_per_step": float(snnc_core[c])} for c in top]
    return out


def print_totals(tot: dict, mean_basis: dict, L: int) -> None:
    s, f = tot["snnc"], tot["sanafe"]
    print("  mean per inference                       snnc            SANA-FE      difference")
    for label, a, b in (("spikes", s["spikes"], f["spikes"]), ("SynOps", s["synops"], f["synops"]),
                        ("spike messages", s["messages"], f["messages"]),
                        ("neuron updates: snnc active / SF updated", s["updates_active"], f["updated"]),
                        ("neuron updates: SF rule on snnc's trace", s["updates_sanafe_rule"], f["updated"])):
        print(f"  {label:<40} {a:>14,.1f} {b:>14,.1f}   {pct(a, b)}")
    print(f"  spike raster mismatches (step, neuron), all images: {tot['raster_mismatches']}")
    eb, ecb, fb = s["energy_breakdown_pJ"], s["energy_sanafe_convention_breakdown_pJ"], f["energy_breakdown_pJ"]
    print("  energy per inference, uJ        snnc (Davies)   snnc (SANA-FE conv.)   SANA-FE")
    for label, a, b, c in (("total", s["energy_pJ"], s["energy_sanafe_convention_pJ"], f["energy_pJ"]),
                           ("synapse", eb["synops_pJ"], ecb["synapse_pJ"], fb["synapse_pJ"]),
                           ("neuron", eb["neuron_updates_pJ"], ecb["neuron_pJ"], fb["neuron_pJ"]),
                           ("message", eb["spike_messages_pJ"], ecb["message_pJ"], fb["message_pJ"])):
        print(f"  {label:<30} {a / 1e6:>10.3f} ({pct(a, c):>7}) {b / 1e6:>10.3f} ({pct(b, c):>7}) {c / 1e6:>10.3f}")
    ts, tf = s["time_per_step_s"], f["time_per_step_s"]
    print("  time                                    snnc model   SANA-FE detailed   SANA-FE simple")
    print(f"  per step, mean (us)                   {ts['mean'] * 1e6:>10.2f}   {tf['mean'] * 1e6:>12.2f}"
          f"   {f['time_per_inference_s_simple'] / L * 1e6:>12.2f}   ({pct(ts['mean'], tf['mean'])} vs detailed)")
    print(f"  per step, max (us)                    {ts['max'] * 1e6:>10.2f}   {tf['max'] * 1e6:>12.2f}")
    print(f"  per inference (us)                    {s['time_per_inference_s'] * 1e6:>10.1f}   "
          f"{f['time_per_inference_s'] * 1e6:>12.1f}   {f['time_per_inference_s_simple'] * 1e6:>12.1f}")
    print(f"  snnc overlap form (SANA-FE simple's rule) per inference: "
          f"{s['time_per_inference_s_overlap'] * 1e6:.1f} us; "
          f"snnc without a trace (basis 'mean', what a compile report holds): "
          f"{mean_basis['time_per_step_s']['mean'] * 1e6:.2f} us per step")
    print("  slowest cores (time per step, us)    SANA-FE neuron side + message side = total | snnc model")
    for c in tot["slowest_cores"]:
        print(f"    core {c['core']:>3}                          {c['sanafe_neuron_side_s'] * 1e6:>8.2f} + "
              f"{c['sanafe_message_side_s'] * 1e6:>8.2f} = {c['sanafe_s_per_step'] * 1e6:>8.2f} | "
              f"{c['snnc_s_per_step'] * 1e6:.2f}")
    e_ok = abs(s["energy_pJ"] / f["energy_pJ"] - 1) <= 0.10
    t_ok = abs(ts["mean"] / tf["mean"] - 1) <= 0.25
    print(f"  GOAL energy within 10%: snnc {pct(s['energy_pJ'], f['energy_pJ'])} vs SANA-FE -> "
          f"{'met' if e_ok else 'NOT met (see docs/targets.md for the differences)'}; SANA-FE convention "
          f"{pct(s['energy_sanafe_convention_pJ'], f['energy_pJ'])}")
    print(f"  GOAL time per step within 25%: {pct(ts['mean'], tf['mean'])} -> "
          f"{'met' if t_ok else 'NOT met (see docs/targets.md)'}")


def _user_compile(objective: str) -> Program:
    """``snnc compile fmnist_cnn --data fashion-mnist --limit 100 --objective OBJECTIVE`` into a temporary folder."""
    import tempfile

    from snnc.backends.loihi.sim import load_program
    from snnc.driver.compiler import compile_model
    from snnc.driver.options import CompileOptions
    with tempfile.TemporaryDirectory(prefix="snnc-bench-energy-") as tmp:
        opts = CompileOptions(data="fashion-mnist", limit=100, objective=objective, seed=SEED).checked()
        with quiet():
            compile_model("fmnist_cnn", Path(tmp) / "out", opts)
        return load_program(Path(tmp) / "out")


def _chosen(prog: Program) -> str:
    o = prog.config["mapping"]["objective"]
    c = o["candidates"][o["chosen"]]
    cap = f"<= {c['neurons_per_core']}" if c["neurons_per_core"] else "up to the core's limit of"
    return f"{c['formats']} formats, {cap} compartments per core, " \
           f"{c['cores']} cores"


def _sf_time(r: dict):
    """SANA-FE's mean time per inference (s) in a configuration's result."""
    return r["mean"]["sanafe"]["time_per_inference_s"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=10, help="test images per configuration (default 10)")
    ap.add_argument("--configs", default="auto,discrete,pruned,latency", help="comma-separated: " + ", ".join(CONFIGS))
    ap.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = ap.parse_args(argv)
    try:
        import sanafe
    except ImportError:
        sys.exit("bench_energy needs SANA-FE: make setup-bench (pip install -e '.[bench]' -c constraints.txt)")
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    print(f"bench_energy: load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; "
          f"python {platform.python_version()}, torch {torch.__version__}, sanafe {metadata.version('sanafe')}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch threads {torch.get_num_threads()}")
    target = load_target("loihi-sim")
    calib, _ = D.load_fashion_mnist("train", limit=CALIB_N)
    x, _ = D.load_fashion_mnist("test", limit=args.samples)
    out = {"samples": int(args.samples), "sanafe": metadata.version("sanafe"), "configs": {}}
    graphs = {}
    for name in args.configs.split(","):
        if name not in CONFIGS:
            sys.exit(f"unknown configuration {name!r}; known: {', '.join(CONFIGS)}")
        pipeline, formats = CONFIGS[name]
        if name == "latency":
            prog = _user_compile("latency")
            out["configs"][name] = dict(bench_config(f"{name} (snnc compile --objective latency: "
                                                     f"{_chosen(prog)})", prog, x, sanafe),
                                        pipeline=pipeline, formats=formats, objective=prog.config["mapping"]["objective"])
            continue
        if pipeline not in graphs:
            g = load_model(REPO / "models" / "fmnist_cnn.pt")[0]
            ctx = PassContext(target=target, calibration=calib, num_steps=T_STEPS, seed=SEED)
            graphs[pipeline] = Pipeline(pipeline).run(g, ctx)
        cfg, arrays, viol = compile_graph(graphs[pipeline], target, raise_on_violation=False, formats=formats)
        if viol:
            print(f"\n== {name}: design-rule violations {sorted({v.rule for v in viol})}; simulated all the same")
        prog = Program(cfg, arrays, target, core_limits=not viol)
        out["configs"][name] = dict(bench_config(f"{name} (pipeline {pipeline}, formats {formats})", prog, x, sanafe),
                                    pipeline=pipeline, formats=formats)
    if "latency" in out["configs"] and "auto" in out["configs"]:
        a, b = out["configs"]["auto"], out["configs"]["latency"]
        ta, tb = _sf_time(a), _sf_time(b)
        if ta and tb:
            out["objective_latency_speedup_sanafe"] = ta / tb
            print(f"\n--objective latency: SANA-FE time per inference {tb * 1e3:.3f} ms against {ta * 1e3:.3f} ms "
                  f"with the default objective (cores): {ta / tb:.2f}x faster")
    load1 = os.getloadavg()
    out["load_average"] = {"start": list(load0), "end": list(load1)}
    out["wall_s"] = time.perf_counter() - t0
    print(f"\nload average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; total wall time {out['wall_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, sort_keys=True, default=float))
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
