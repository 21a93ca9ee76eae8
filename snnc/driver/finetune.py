"""Recovery fine-tuning of a (pruned) NIR graph with surrogate gradients.

:func:`finetune` trains the weights and biases of a graph (as :class:`snnc.ir.trainable.GraphSNN`)
with backpropagation through time on direct (analog) image input repeated for T steps:
Adam with a cosine learning-rate schedule, cross-entropy on the class scores read by the
graph's readout rule (:func:`snnc.driver.compiler.readout_rule`: the readout voltage after T steps, or
spike counts over the T steps), optionally knowledge distillation from a teacher (the unpruned
model) — ``loss = (1 - a) CE(s, y) + a tau^2 KL(softmax(t / tau) || softmax(s / tau))``
(Hinton et al., "Distilling the Knowledge in a Neural Network", 2015) — and random horizontal
flips as in the zoo's training recipe.

A :class:`snnc.driver.methods.Recipe` adds the compression methods that train: ``sca`` (Li et al.'s
spiking-channel-activity pruning with regeneration), ``minimax`` (adapted from Chen et al.'s primal-dual
resource-constrained compression), ``spike-thrift`` (Kundu et al.'s attention transfer with trained thresholds
and leaks), and a SynOps regulariser; see that module.

With ``qat`` (quantization-aware training), the forward pass uses fake-quantized weights of every
on-chip projection: ``W_q = W + (Q(W) - W).detach()`` (the straight-through estimator: the gradient
of ``Q`` is taken as 1, Bengio et al. 2013), ``Q`` rounding to the grid that the ``quantize`` pass
chooses with the same options (:func:`snnc.passes.quantize.weight_grids`: per row a mantissa unit,
multiples of the format's step in ``[-256, 256 - step]``). The grids are re-derived from the current
weights at the start of every epoch and every ``qat_refresh`` batches. The trained model keeps the
fake-quantized weights (on the last grids), which ``snnc compile`` with the same quantization options
(``--calibrate`` keeps a grid that weights already sit on) maps back onto the same mantissas.

Tensors: ``x`` ``[N, *input_shape]`` float32 images, ``y`` ``[N]`` int64 labels.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import shlex
import tempfile
import sys
import time
from pathlib import Path

import nir
import numpy as np
import torch
import torch.nn.functional as F

from snnc.errors import SnncError
from snnc import data as D
from snnc.driver.options import CompileOptions
from snnc.frontends import load_model, resolve_model_path
from snnc.data.checks import check_classes, fit_input
from snnc.data.sampling import RULE
from snnc.ir.device import resolve as resolve_device
from snnc.data.training import load_training
from snnc.ir import node_shape, output_classes, set_types
from snnc.ir import readout as R
from snnc.ir.trainable import GraphSNN, checkpoint, param_key
from snnc.ir.validate import check_graph, check_num_steps
from snnc.passes import PassContext, Pipeline
from snnc.passes.prune import apply_keep, channel_groups
from snnc.driver.methods import (Minimax, NeuronTraining, Recipe, SCAPruning, SynOpsPenalty, attention_layers,
                                 attention_loss, batchnorm_affines, forward_counts, minimax_budget)
from snnc.passes.quantize import weight_grids
from snnc.targets import load_target


def _batch(x: np.ndarray, idx, spikes: bool, device=None) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x[:, idx] if spikes else x[idx])).to(device)


def _device_of(model) -> torch.device:
    return next((t.device for t in model.parameters()), next((t.device for t in model.buffers()),
                                                             torch.device("cpu")))


def accuracy(model, x: np.ndarray, y: np.ndarray, num_steps: int, rule: str, batch_size: int = 500,
             spikes: bool = False) -> float:
    """Share of ``x`` whose class by the readout ``rule`` is ``y``; runs where ``model``'s tensors are."""
    correct = 0
    was = model.training
    model.eval()
    dev = _device_of(model)
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            s = R.step_scores(model, _batch(x, slice(i, i + batch_size), spikes, dev), num_steps, rule, spikes)
            correct += int((s.argmax(1).cpu().numpy() == y[i:i + batch_size]).sum())
    model.train(was)
    return correct / max(len(y), 1)


#: from this many epochs on, the (frozen, eval-mode) teacher's scores are computed once per training image and its
#: mirror image before training instead of on every batch: 2 teacher passes instead of one per epoch
TEACHER_CACHE_EPOCHS = 3


def _teacher_cache(teacher, x: np.ndarray, steps: int, rule: str, flip: bool, dev, chunk: int):
    """The teacher's class scores ``[N, classes]`` (CPU, float32) for every training image ``x``, and for its
    horizontal mirror when ``flip`` (else None): what the training loop would compute batch by batch."""
    def run(mirror):
        out = []
        with torch.no_grad():
            for i in range(0, len(x), chunk):
                xb = torch.from_numpy(np.ascontiguousarray(x[i:i + chunk])).to(dev)
                if mirror:
                    xb = xb.flip(-1)
                if hasattr(teacher, "ex"):
                    t, _ = forward_counts(teacher, xb, steps, rule, [], False)
                else:
                    t = R.step_scores(teacher, xb, steps, rule, False)
                out.append(t.float().cpu())
        return torch.cat(out)
    return run(False), (run(True) if flip else None)


def _kd(student, teacher, y, alpha, tau):
    ce = F.cross_entropy(student, y)
    if teacher is None or alpha <= 0:
        return ce
    kl = F.kl_div(F.log_softmax(student / tau, 1), F.softmax(teacher / tau, 1), reduction="batchmean")
    return (1 - alpha) * ce + alpha * tau * tau * kl


class _FakeQuant:
    """Straight-through fake quantization of the on-chip weights (see module docstring)."""

    def __init__(self, model: GraphSNN, options: dict, calibration: np.ndarray, num_steps: int, target=None):
        self.model, self.options, self.calibration, self.num_steps = model, dict(options), calibration, num_steps
        self.target = target if target is not None else load_target("loihi-sim")
        self.grids: dict = {}
        self.refreshes = 0

    def refresh(self) -> None:
        """Run the quantize pass on the current weights and keep its grids."""
        g = self._float_graph()
        ctx = PassContext(target=self.target, calibration=self.calibration, num_steps=self.num_steps)
        q = Pipeline([("quantize", self.options)]).run(g, ctx)
        self.grids = {}
        for node, (unit, step, qmax) in weight_grids(g, q, self.target).items():
            w = self.model.weights[param_key(node, "weight")]
            self.grids[node] = (torch.as_tensor(unit, dtype=torch.float32, device=w.device), step, qmax)
        self.refreshes += 1

    def _float_graph(self):
        g = self.model.to_nir()
        for node in self.grids:  # to_nir reads the executor's (fake-quantized) weights: take the trained ones
            k = param_key(node, "weight")
            g.nodes[node].weight = self.model.weights[k].detach().cpu().numpy().astype(np.float32).copy()
        return g

    def apply(self) -> None:
        """Point the executor at fake-quantized weights (recomputed each batch, straight-through)."""
        for node, (unit, step, qmax) in self.grids.items():
            w = self.model.weights[param_key(node, "weight")]
            u = unit.reshape((-1,) + (1,) * (w.dim() - 1)) * step
            wq = torch.clamp(torch.round(w.detach() / u), -256 // step, qmax // step) * u
            self.model.ex._p[node]["weight"] = w + (wq - w.detach())


def finetune(graph, x: np.ndarray, y: np.ndarray, num_steps: int, epochs: int = 1, lr: float = 1e-3,
             batch_size: int = 128, seed: int = 0, x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
             teacher=None, teacher_scores: np.ndarray | None = None, distill: float = 0.0, temperature: float = 4.0,
             flip: bool = True, recipe: Recipe | None = None, teacher_steps: int | None = None,
             spikes: bool = False, progress=None, log=None, qat: dict | None = None,
             qat_calibration: np.ndarray | None = None, qat_refresh: int = 100, target=None, device=None):
    """Train ``graph``'s weights (and, by the ``recipe``, thresholds, leaks and channel masks); returns
    ``(GraphSNN, history)`` (one entry per epoch); with a pruning recipe the returned model has the closed channels
    removed; the model's ``method_report`` says what the recipe did (kept channels, trained thresholds, ...).

    Args:
        graph: the NIR graph to train (for a pruning recipe, ``sca`` or ``minimax``: the UNPRUNED graph).
        x, y: training images ``[N, *input_shape]`` (with ``spikes``: time-major spike input
            ``[T, N, *input_shape]``; no flips) and labels ``[N]``.
        x_val, y_val: held-out images for the per-epoch accuracy (optional).
        teacher: a single-step module (or a NIR graph) whose scores the student distils;
            ``teacher_scores`` ``[N, classes]`` precomputed on ``x`` instead (then ``flip`` must be off).
            Attention transfer needs the teacher as a NIR graph (or :class:`GraphSNN`) with the same layer names.
            From :data:`TEACHER_CACHE_EPOCHS` epochs on (distillation without attention transfer, direct input) the
            teacher's scores are computed once per image and its mirror before training, not on every batch.
        teacher_steps: the teacher's T when it differs from ``num_steps`` (training at a folded T'); its
            spike-count scores are then scaled by ``num_steps / teacher_steps``.
        distill: the KD weight ``a`` in [0, 1); 0 trains on the labels alone.
        recipe: the training method and its options (:class:`snnc.driver.methods.Recipe`; default plain).
        progress: callable(epoch, step, steps, loss) after each batch; log: callable(str) per epoch.
        qat: quantize pass options (e.g. ``{"weight_bits": 4, "scales": "mse"}``) for quantization-aware
            training with the straight-through estimator (module docstring); ``qat_calibration`` the
            images its scales are calibrated on (default the first 256 of ``x``), ``qat_refresh`` the
            batches between grid refreshes; ``target`` the target whose grids are used (default loihi-sim).
        device: torch device to train on (default CPU; :func:`snnc.ir.device.resolve` gives ``auto``); the
            returned model is on the CPU.

    Raises:
        ValueError: inconsistent arguments (sizes, distill range, teacher scores with flips, attention transfer
            without a graph teacher, quantization-aware training with a pruning recipe).
    """

    n_x = x.shape[1] if spikes else len(x)
    if n_x != len(y) or len(y) == 0:
        raise SnncError(f"finetune: {n_x} samples and {len(y)} labels")
    recipe = recipe or Recipe()
    flip = flip and not spikes
    if not 0 <= distill < 1:
        raise SnncError(f"finetune: distill must be in [0, 1), got {distill}")
    if not (math.isfinite(lr) and lr > 0):
        raise SnncError(f"finetune: the learning rate must be a finite number > 0, got {lr}")
    if teacher_scores is not None and (flip or len(teacher_scores) != len(y)):
        raise SnncError("finetune: precomputed teacher scores need flip=False and one row per training image")
    if distill > 0 and teacher is None and teacher_scores is None:
        raise SnncError("finetune: distill > 0 needs a teacher")
    if qat is not None and recipe.prunes:
        raise SnncError(f"finetune: quantization-aware training and {recipe.method} pruning are separate runs "
                         "(prune first, then fine-tune the pruned model with qat)")
    rule = R.readout_rule(graph)["rule"]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = torch.device("cpu") if device is None else torch.device(device)
    tgt = target if target is not None else load_target("loihi-sim")
    model = GraphSNN(graph).to(dev)
    model.train()
    if teacher is not None and not isinstance(teacher, torch.nn.Module):
        teacher = GraphSNN(teacher)
    if teacher is not None:
        teacher.to(dev).eval()
    t_steps = int(teacher_steps or num_steps)
    t_rule = R.readout_rule(teacher.graph if hasattr(teacher, "graph") else graph)["rule"] if teacher is not None \
        else rule
    steps = (len(y) + batch_size - 1) // batch_size
    batches = max(epochs * steps, 1)
    groups = [g for g in channel_groups(graph) if g.prunable]
    pruner = None
    if recipe.method == "sca":
        pruner = SCAPruning(model, groups, recipe.keep, batches, steps_per_epoch=steps, device=dev,
                            **recipe.extra)
    elif recipe.method == "minimax":
        pruner = Minimax(model, groups, minimax_budget(graph, recipe.keep), batches, device=dev)
    if pruner is not None and not pruner.groups:
        raise SnncError(f"finetune: training method {recipe.method!r} found no prunable channel group in the graph")
    neurons = NeuronTraining(model, tgt, dev) if recipe.thresholds else None
    at_layers = []
    if recipe.attention > 0:
        if not hasattr(teacher, "graph"):
            raise SnncError("finetune: attention transfer needs the uncompressed model as a NIR-graph teacher")
        at_layers = attention_layers(model, teacher)
        if not at_layers:
            raise SnncError("finetune: attention transfer found no spiking layer with positions (C x H x W) in both "
                             "the model and the teacher")
    penalty = SynOpsPenalty(graph, recipe.synops, dev) if recipe.synops > 0 else None
    record = sorted(set(at_layers) | set(penalty.layers if penalty else []))
    fq = None
    if qat is not None:
        fq = _FakeQuant(model, qat, x[:256] if qat_calibration is None else qat_calibration, num_steps, tgt)
    cache = None
    if (teacher is not None and teacher_scores is None and distill > 0 and not at_layers and not spikes
            and epochs >= TEACHER_CACHE_EPOCHS):
        cache = _teacher_cache(teacher, x, t_steps, t_rule, flip, dev, batch_size)
    params = list(model.weights.values()) + (neurons.parameters() if neurons else [])
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=batches)
    history = []
    t0 = time.time()
    for epoch in range(epochs):
        perm = rng.permutation(len(y))
        tot, n, correct, syn_sum = 0.0, 0, 0, 0.0
        for b in range(steps):
            if fq is not None and b % max(qat_refresh, 1) == 0:
                fq.refresh()
            if fq is not None:
                fq.apply()
            idx = perm[b * batch_size:(b + 1) * batch_size]
            xb = _batch(x, idx, spikes)
            if flip:
                fl = torch.from_numpy(rng.random(len(idx)) < 0.5)
                xb[fl] = xb[fl].flip(-1)
            xb, yb = xb.to(dev), torch.from_numpy(y[idx]).to(dev)
            if pruner is not None:
                pruner.masks.apply()
            if neurons is not None:
                neurons.apply()
            s, counts = forward_counts(model, xb, num_steps, rule, record, spikes,
                                       on_step=pruner.observe if isinstance(pruner, SCAPruning) else None)
            t = t_counts = None
            if distill > 0 or at_layers:
                if cache is not None:  # the same teacher forward, done once per image (and its mirror image)
                    plain, mirrored = cache
                    t = plain[idx] if mirrored is None else torch.where(fl[:, None], mirrored[idx], plain[idx])
                    t = t.to(device=dev, dtype=s.dtype)
                elif teacher_scores is not None:
                    t = torch.as_tensor(teacher_scores[idx], dtype=s.dtype, device=dev)
                else:
                    with torch.no_grad():
                        if hasattr(teacher, "ex"):
                            t, t_counts = forward_counts(teacher, xb, t_steps, t_rule, at_layers, spikes)
                        else:
                            t = R.step_scores(teacher, xb, t_steps, t_rule, spikes)
                        t = t.to(s.dtype)
                    if t_rule == R.SPIKE_COUNT and t_steps != num_steps:
                        t = t * (num_steps / t_steps)
            loss = _kd(s, t, yb, distill, temperature)
            if at_layers:
                loss = loss + attention_loss(counts, t_counts, at_layers, recipe.attention)
            if penalty is not None:
                reg, syn = penalty(counts)
                loss = loss + reg
                syn_sum += syn * len(idx)
            opt.zero_grad()
            loss.backward()
            lr_now = opt.param_groups[0]["lr"]  # the step's learning rate (the prox step of minimax uses it)
            try:
                opt.step()
            except RuntimeError as e:  # a learning rate too large for float32 (torch: "... without overflow")
                if "overflow" not in str(e):
                    raise
                raise SnncError(f"finetune: the optimiser step overflowed at epoch {epoch + 1}, batch {b + 1} "
                                 f"(learning rate {lr:g}); nothing was written: lower the learning rate (--lr)") \
                    from None
            sched.step()
            done_b = epoch * steps + b
            if isinstance(pruner, SCAPruning):
                pruner.after_batch(done_b, num_steps)
            elif pruner is not None:
                pruner.step(lr_now, done_b)
            loss_now = float(loss.detach())
            if not math.isfinite(loss_now):  # diverged: stop before NaN weights reach a checkpoint
                raise SnncError(f"finetune: the training loss became {loss_now} at epoch {epoch + 1}, batch {b + 1} "
                                 f"(learning rate {lr:g}); nothing was written: lower the learning rate (--lr)")
            tot += loss_now * len(idx)
            n += len(idx)
            correct += int((s.argmax(1) == yb).sum())
            if progress:
                progress(epoch, b + 1, steps, tot / n)
        entry = {"epoch": epoch + 1, "loss": tot / n, "train_accuracy": correct / n,
                 "elapsed_s": round(time.time() - t0, 1)}
        if pruner is not None:
            pruner.masks.apply()
            entry["kept"] = pruner.masks.kept()
        if neurons is not None:
            neurons.apply()
            entry["neurons"] = neurons.state()
        if penalty is not None:
            entry["synops_per_sample"] = round(syn_sum / n, 1)
            entry["synop_energy_uJ"] = round(syn_sum / n * float(tgt.data.get("energy_pJ", {}).get("synop", 0.0))
                                             * 1e-6, 4)
        if fq is not None:
            fq.apply()
            entry["qat_grid_refreshes"] = fq.refreshes
        if x_val is not None:
            entry["val_accuracy"] = accuracy(model, x_val, y_val, num_steps, rule, spikes=spikes)
        history.append(entry)
        if log:
            log(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()
                         if not isinstance(v, dict)))
    bad = sorted(k for k, v in model.weights.items() if not bool(torch.isfinite(v.detach()).all()))
    if bad:  # e.g. a learning rate so large that the last step overflowed
        raise SnncError(f"finetune: training left non-finite weights in {', '.join(bad[:3])} (learning rate {lr:g}); "
                         "nothing was written: lower the learning rate (--lr)")
    if neurons is not None:  # the trained thresholds and leaks into the graph (to_nir reads the executor's values)
        neurons.apply()
    if pruner is not None:  # the masked weights are what was trained; then remove the closed channels
        pruner.masks.apply()
        trained = model.to_nir()
        for g in pruner.groups:
            keep = pruner.masks.keep_sets()[g.name]
            if len(keep) < g.channels:
                apply_keep(trained, g, keep, recipe.method)
        set_types(trained)
        trained.metadata = dict(trained.metadata or {}, **{"snnc.pruning": {
            "criterion": recipe.method, "layers": {g.name: {"kept": int(len(pruner.masks.keep_sets()[g.name])),
                                                            "total": g.channels} for g in pruner.groups}}})
        model = GraphSNN(trained)
    elif neurons is not None:
        model = GraphSNN(model.to_nir())
    report = recipe.describe()
    if pruner is not None:
        report["pruning"] = pruner.report()
    if neurons is not None:
        report["neurons"] = dict(neurons.state(), **({"skipped": neurons.skipped} if neurons.skipped else {}))
    if at_layers:
        report["attention_layers"] = at_layers
    if penalty is not None and history:  # the regulariser's effect, in the energy report's units
        e_syn = float(tgt.data.get("energy_pJ", {}).get("synop", 0.0))
        end = history[-1]["synops_per_sample"]
        report["synops_regulariser"] = {
            "weight": recipe.synops, "synops_first_batch": round(penalty.ref, 1), "synops_last_epoch": end,
            "energy_saved_uJ": round((penalty.ref - end) * e_syn * 1e-6, 4),
            "energy_per_synop_pJ": e_syn, "measured_on": "the training batches (augmented), per sample"}
    if fq is not None:  # keep the fake-quantized weights (on the last grids) as the model's weights
        fq.apply()
        model = GraphSNN(model.to_nir())
    model.cpu().eval()
    model.method_report = report  # what the recipe did (read by finetune_model and the compile driver)
    if teacher is not None:
        teacher.cpu()
    return model, history


def _load_teacher(teacher, graph, T: int, trust_pickle: bool, input_shape=None, as_graph: bool = False):
    """The distillation teacher ``teacher`` (model file or shipped name) as a single-step module, or
    its graph after ``fold_bn``; refused when its input shape, T or number of classes differ from
    ``graph``'s (NIR shapes, no batch/time dims)."""

    def io(g):  # (input shape, output shape)
        return tuple(next(list(node_shape(n, port)) for n in g.nodes.values() if isinstance(n, cls))
                     for cls, port in ((nir.Input, "input"), (nir.Output, "output")))
    tg, tmod, tinfo = load_model(teacher, trust_pickle=trust_pickle, input_shape=input_shape)
    # the teacher's own T (a checkpoint's, a module's attribute); only a teacher that states none runs at the model's
    tT = check_num_steps(tinfo.get("num_steps") or (tg.metadata or {}).get("snnc.num_steps") or T, "teacher T")
    if io(tg) != io(graph) or tT != T:
        raise SnncError(f"finetune: teacher {teacher} takes input {io(tg)[0]} -> {io(tg)[1]} over T = {tT}; "
                         f"the model {io(graph)[0]} -> {io(graph)[1]} over T = {T}")
    return tmod if tmod is not None and not as_graph else Pipeline("fold_bn").run(tg, PassContext(num_steps=T))


def finetune_model(model, out_path, options: CompileOptions | None = None, *, epochs: int = 1,
                   passes: str | None = None, lr: float = 1e-3, batch_size: int = 128, train_limit: int | None = None,
                   val_samples: int | None = None, distill: float = 0.0, teacher=None, recipe: Recipe | None = None,
                   qat: bool = False, progress=None, log=None, **overrides) -> dict:
    """``snnc finetune``: load MODEL (a model file or shipped name, or a compile output folder, whose
    ``graph.nir`` is used), run ``passes`` on it (e.g. ``"fold_bn,prune_channels:criterion=activity;ratio=0.25"``;
    no quantize), fine-tune on the dataset's training split split by the one sampling rule
    (:mod:`snnc.data.sampling`): the validation samples (the dataset's val split, else the first 10%, at most
    5,000, of the rule's order, or ``val_samples``) give the per-epoch accuracy, the first ``train_limit`` (default
    all) fitting samples are trained on, and write an snnc checkpoint (arch ``nir_graph``) to ``out_path``.

    With ``distill`` > 0 the model before the passes is the teacher, or ``teacher`` (a model file or
    shipped name, loaded like ``model``; its input shape, T and number of classes must match), e.g. the
    unpruned model when ``model`` is already pruned. ``recipe`` (:class:`snnc.driver.methods.Recipe`) picks the
    training method: ``sca`` and ``minimax`` prune the graph after the passes while training (leave
    ``prune_channels`` out of the passes), ``spike-thrift`` distils attention maps from the model before the passes
    and trains thresholds and leaks. With ``fold_timesteps`` among the passes the model trains and is evaluated at
    the folded T' (the checkpoint records T'); the teacher runs at its own T. With ``qat``,
    quantization-aware training (straight-through estimator) for the quantize options ``weight_bits``,
    ``per_channel`` and, with ``calibrate`` = N, MSE-calibrated scales on the first N training images
    (else 256 images bound the ranges); ``meta["qat"]`` then also holds the test accuracy of the
    fake-quantized model (the float graph after that quantize pass) before and after.

    ``options`` (:class:`~snnc.driver.options.CompileOptions`, shared with ``snnc compile``; ``overrides``
    are its fields by name) gives the model's loading options (``trust_pickle``, ``num_steps``,
    ``input_shape``), the data (``data``, default ``"fashion-mnist"``; ``data_dir``; ``limit`` test images),
    ``seed``, ``force``, and with ``qat`` the quantize options (``weight_bits``, default 8; ``per_channel``;
    ``calibrate``). The arguments after it are fine-tuning's own (``batch_size`` is the training batch).

    Returns the checkpoint's ``meta`` (float test accuracy before and after, history, ...).

    Raises:
        ValueError: unreadable model or teacher, a teacher without ``distill`` or whose input shape, T or
            classes differ, bad passes (quantize is refused: fine-tune before quantizing; prune_channels with a
            pruning method),
            a spike-input model, an existing ``out_path`` without ``force``, data problems.
    """
    opts = (options or CompileOptions(data="fashion-mnist")).replace(**overrides)  # checked
    data, data_dir, seed, test_limit, force = opts.data or "fashion-mnist", opts.data_dir, opts.seed, opts.limit, opts.force
    trust_pickle, num_steps, input_shape = opts.trust_pickle, opts.num_steps, opts.input_shape
    weight_bits, per_channel, calibrate = opts.weight_bits or 8, opts.per_channel, opts.calibrate


    out_path = Path(out_path)
    check_checkpoint_target(out_path, force, [model, teacher, data if isinstance(data, (str, Path)) else None,
                                              data_dir])
    src = Path(str(model))
    if src.is_dir():
        g_path = src / "graph.nir"
        if not g_path.is_file():
            raise SnncError(f"{src}: not a compile output folder (no graph.nir)")
        graph, module, info = load_model(g_path, num_steps=num_steps)
        for node in graph.nodes.values():  # a compiled graph: fake-quantized floats are the start
            (node.metadata or {}).pop("snnc.quant", None)
        (graph.metadata or {}).pop("snnc.quantized", None)
        graph.metadata.setdefault("snnc.input_encoding", "direct")
    else:
        graph, module, info = load_model(model, trust_pickle=trust_pickle, num_steps=num_steps,
                                         input_shape=input_shape,
                                         data_shape=None if input_shape else D.sample_shape(data, data_dir),
                                         data_name=f"dataset {data!r}")
    if info.get("factory_weights") == "random" and log:
        log(f"note: {model} returns different weights on every call: training starts from its random initial "
            "weights (to start from trained ones, load them inside the factory)")
    T = num_steps or info.get("num_steps") or (graph.metadata or {}).get("snnc.num_steps")
    if T is None:
        raise SnncError("the number of time steps T is unknown for this model; pass --num-steps")
    T = check_num_steps(T, "T")
    graph.metadata = dict(graph.metadata or {}, **{"snnc.num_steps": T})
    if graph.metadata.get("snnc.input_encoding") == "spikes":
        raise SnncError("finetune trains on image datasets (direct input); this model takes spike input")
    check_graph(graph)
    t_model = None
    if teacher is not None:
        if not distill > 0 and not (recipe is not None and recipe.attention > 0):
            raise SnncError("finetune: --teacher is the distillation teacher; give --distill A > 0 (or attention "
                             "transfer) too")
        t_model = _load_teacher(teacher, graph, T, trust_pickle, input_shape,
                                as_graph=recipe is not None and recipe.attention > 0)
    if not qat and (per_channel or calibrate is not None or weight_bits != 8):
        raise SnncError("finetune: --weight-bits, --per-channel and --calibrate set up --qat (quantization-aware "
                         "training); add --qat")
    spec = passes or "fold_bn"
    pipe = Pipeline(spec)
    if any(n == "quantize" for n, _ in pipe.passes):
        raise SnncError("finetune: leave quantize out of --passes (fine-tune first, then compile quantizes)")
    want = node_shape(next(n for n in graph.nodes.values() if isinstance(n, nir.Input)), "input")
    td = load_training(data, data_dir, seed=seed, val_samples=val_samples)
    if not td.val_count:
        raise SnncError(f"finetune: {data}'s {td.train_count:,} training samples give no validation samples "
                        "(fewer than 10; add a val split or pass --val-samples)")
    xtr, ytr = td.fit(train_limit)
    xval, yval = td.val()
    xtr, xval = fit_input(xtr, want, False, data)[0], fit_input(xval, want, False, data)[0]
    xte, yte = D.load(data, "test", data_dir, limit=test_limit)
    xte = fit_input(xte, want, False, data)[0]
    classes = output_classes(graph)
    check_classes(ytr, classes, f"dataset {data!r} (train split)")
    check_classes(yval, classes, f"dataset {data!r} (validation samples)")
    check_classes(yte, classes, f"dataset {data!r} (test split)")
    ctx = PassContext(calibration=xtr[:256], num_steps=T, seed=seed)
    base = Pipeline("fold_bn").run(graph, PassContext(num_steps=T)) if "fold_bn" in spec else copy.deepcopy(graph)
    pruned = pipe.run(graph, ctx)
    rule = R.readout_rule(pruned)["rule"]
    dev = resolve_device(opts.device)
    say_dev = f" ({dev.type})"
    T_train = int((pruned.metadata or {}).get("snnc.num_steps") or T)  # T' after fold_timesteps
    acc_before = accuracy(GraphSNN(pruned).to(dev), xte, yte, T_train, rule)
    say = log or (lambda s: None)
    say(f"float test accuracy after the passes, before fine-tuning (T = {T_train}): {100 * acc_before:.2f}% on "
        f"{len(yte):,} images"
        + say_dev)
    qopts = qcal = None
    if qat:
        qopts = {"weight_bits": int(weight_bits), "per_channel": bool(per_channel),
                 "scales": "mse" if calibrate is not None else "max"}
        Pipeline([("quantize", qopts)])  # options checked before any training
        qcal = xtr[:int(calibrate) if calibrate is not None else 256]
        tgt = load_target("loihi-sim")

        def quant_acc(g):
            qg = Pipeline([("quantize", qopts)]).run(g, PassContext(target=tgt, calibration=qcal, num_steps=T))
            return accuracy(GraphSNN(qg).to(dev), xte, yte, int((g.metadata or {}).get("snnc.num_steps") or T), rule)
        qacc_before = quant_acc(pruned)
        say(f"fake-quantized ({weight_bits}-bit) test accuracy before fine-tuning: {100 * qacc_before:.2f}%")
    recipe = recipe or Recipe()
    if recipe.prunes and any(n in ("prune_channels", "budget") for n, _ in pipe.passes):
        raise SnncError(f"finetune --method {recipe.method} prunes while training; leave prune_channels out of "
                         "--passes (use --keep F for the target)")
    if recipe.method == "sca":  # the BatchNorm scales folded by the passes give SCA's regeneration score
        recipe = dataclasses.replace(recipe, extra=dict(recipe.extra, bn=recipe.extra.get("bn",
                                                                                           batchnorm_affines(graph))))
    if T_train != T:
        say(f"training at the folded T' = {T_train} (the model before the passes runs T = {T})")
    t_steps = T
    if (distill > 0 or recipe.attention > 0) and t_model is None:  # the model before the passes
        t_model = base if recipe.attention > 0 or module is None else module
    model_f, history = finetune(pruned, xtr, ytr, T_train, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                x_val=xval, y_val=yval, teacher=t_model, distill=distill, recipe=recipe,
                                teacher_steps=t_steps, progress=progress, log=say, qat=qopts, qat_calibration=qcal,
                                device=dev)
    acc_after = accuracy(model_f.to(dev), xte, yte, T_train, rule)
    model_f.cpu()
    say(f"float test accuracy after fine-tuning: {100 * acc_after:.2f}% on {len(yte):,} images")
    meta = {"dataset": data, "source_model": str(model), "passes": spec, "epochs": int(epochs), "lr": float(lr),
            "batch_size": int(batch_size), "seed": int(seed), "distill": float(distill), "device": dev.type,
            **({"teacher": str(teacher)} if teacher is not None else {}), "method": model_f.method_report,
            "train_samples": int(len(ytr)), "val_samples": int(len(yval)), "num_steps": int(T_train),
            **({"num_steps_before_folding": int(T)} if T_train != T else {}),
            "data": {"rule": RULE, "train": {"samples": int(len(ytr)), "of": td.train_count,
                                             "selection": f"the first {len(ytr):,} fitting samples by the rule"},
                     "validation": {"samples": int(len(yval)), "from": ("the dataset's val split"
                                    if td.val_source == "val split" else "carved from the training split")},
                     "test": {"samples": int(len(yte)), "selection": "the first samples in file order"
                              if test_limit else "all"}},
            "float_test_accuracy_before": float(acc_before), "float_test_accuracy": float(acc_after),
            "test_samples": int(len(yte)), "history": history,
            **({"qat": dict(qopts, calibration_images=int(len(qcal)), method="straight-through estimator",
                            fake_quant_test_accuracy_before=float(qacc_before),
                            fake_quant_test_accuracy=float(quant_acc(model_f.to_nir())))} if qat else {}),
            "command": "snnc finetune " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["finetune"] else "python API"}
    ck = checkpoint(model_f, meta)
    ck["config"]["metadata"]["snnc.num_steps"] = T_train
    check_checkpoint_target(out_path, force, [model, teacher, data if isinstance(data, (str, Path)) else None,
                                              data_dir])  # again: it may have appeared while training
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    made = [p for p in reversed(out_path.absolute().parents) if not p.exists()]
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ck, tmp)
        tmp.replace(out_path)
    except BaseException as e:  # torch.save reports an unwritable place as a RuntimeError; Ctrl-C cleans up too
        tmp.unlink(missing_ok=True)
        for p in reversed(made):  # folders this run created, now empty again
            try:
                p.rmdir()
            except OSError:
                break
        if not isinstance(e, (OSError, RuntimeError)):
            raise
        reason = e.strerror if isinstance(e, OSError) and e.strerror else _one_line_reason(e)
        raise SnncError(f"{out_path}: cannot be written ({reason}); nothing was written") from None
    return meta


def _one_line_reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:200] or type(e).__name__


def is_snnc_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a file snnc wrote as a checkpoint (``format: snnc-checkpoint``; read with
    ``weights_only=True``, so nothing is unpickled)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - anything unreadable is not an snnc checkpoint
        return False
    return isinstance(ck, dict) and ck.get("format") == "snnc-checkpoint"


def check_checkpoint_target(out_path: Path, force: bool, inputs=()) -> None:
    """Refuse to write the checkpoint ``out_path`` where it would destroy something snnc did not write: a
    folder, an existing file without ``force``, with ``force`` any file that is not an snnc checkpoint or
    that is one of ``inputs`` (the model, the teacher, the data), a place that cannot be written (checked
    by creating and removing a temporary file next to it, before any training).

    Raises:
        SnncError: the reason, naming the path.
    """
    if out_path.is_dir():
        raise SnncError(f"{out_path} is a folder; give a checkpoint file name (.pt)")
    if out_path.exists() or out_path.is_symlink():
        if not force:
            raise SnncError(f"{out_path} exists; pass --force to replace it (only an snnc checkpoint is replaced)")
        for src in inputs:
            if src is None:
                continue
            sp = Path(str(src))
            if not sp.exists():  # a shipped model's name (fmnist_cnn) stands for its file
                try:
                    sp = resolve_model_path(src)
                except SnncError:
                    continue
            try:
                same = sp.exists() and (os.path.samefile(sp, out_path) or (sp.is_dir() and out_path.resolve()
                                                                            .is_relative_to(sp.resolve())))
            except OSError:
                same = False
            if same:
                raise SnncError(f"{out_path} is one of this run's inputs ({src}); --force replaces only an earlier "
                                 "checkpoint, give another -o")
        if out_path.is_symlink() or not is_snnc_checkpoint(out_path):
            raise SnncError(f"{out_path} exists and is not an snnc checkpoint; --force replaces only a checkpoint "
                             "snnc wrote, give another -o")
    parent = out_path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SnncError(f"{out_path}: {parent} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".snnc-write-probe-", dir=parent)
    except OSError as e:
        raise SnncError(f"{out_path}: cannot be written in {parent} ({e.strerror or e}); nothing was trained") \
            from None
    os.close(fd)
    os.unlink(probe)
