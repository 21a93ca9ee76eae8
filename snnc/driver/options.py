"""The options of a compile, in one place: shared by ``snnc compile``, ``snnc finetune``, the Python API
(:func:`snnc.compile`, :func:`snnc.driver.compiler.compile_model`) and ``--budget``.

Each field says which command uses it. :meth:`CompileOptions.checked` refuses combinations that
cannot work before any work starts (one line each, :class:`snnc.errors.UsageError`).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, fields

from snnc.ir.device import resolve as resolve_device
from snnc.backends.loihi.mapping import check_formats
from snnc.data.events import ENCODERS
from snnc.data.python import Splits
from snnc.ir.validate import INPUT_ENCODINGS
from snnc.passes.prune import CRITERIA
from snnc.errors import UsageError
from snnc.frontends.nir_file import SEMANTICS
from snnc.passes import DEFAULT_PIPELINE

RESETS = ("zero", "subtract")  # what --reset can say of a .nir file's neurons
#: ``--train-method`` of ``snnc compile``: the methods that train a graph as it is (sca and minimax prune while
#: training, toward a keep target: ``snnc finetune --method``).
TRAIN_METHODS = ("plain", "spike-thrift")


@dataclass
class CompileOptions:
    """Every option of ``snnc compile`` (most also of ``snnc finetune``), with the CLI's defaults.

    Model (how to read MODEL):
        trust_pickle: allow a fully pickled ``nn.Module`` (unpickling runs code).
        weights: state dict for a ``file.py:factory`` model (read with ``weights_only=True``).
        dt: time step in s for models that do not record one.
        num_steps: T, time steps per sample.
        input_shape: input shape without batch/time dims, e.g. ``(1, 28, 28)``.
        input_encoding: ``"direct"`` (analog input, injected by the host) or ``"spikes"``.
        reset: reset mode of a ``.nir`` file's spiking neurons (``"zero"``/``"subtract"``).
        semantics: whose conventions a ``.nir`` file's neurons follow (``"nir"``, ``"snntorch"``,
            ``"spikingjelly"``, ``"norse"``, ``"sinabs"``: each that framework's own NIR importer,
            :mod:`snnc.frontends.nir_file`); None = NIR's specification, undeclared (an
            ``UNDECLARED_SEMANTICS`` check measures what the other readings would change).
    Data:
        data: ``"fashion-mnist"``, ``"digits"``, ``PATH.npz``, an ImageFolder ``DIR``, ``file.py:factory``,
            ``"events:PATH"``, a tuple ``(x_train, y_train, x_test, y_test)`` or :class:`snnc.data.Splits`
            (calibration, accuracy, budget; :mod:`snnc.data`).
        data_dir: folder with the dataset's files.
        limit: test samples to evaluate (None: the whole test split).
        encode: ``"rate"``/``"latency"``: spike encoder for image data into a spike-input model.
    Passes:
        passes: the pipeline spec, e.g. ``"fold_bn,quantize:weight_bits=8"`` (see ``snnc passes``).
        weight_bits, per_channel, calibrate, timesteps: ``--weight-bits``, ``--per-channel``,
            ``--calibrate N`` (MSE scales on N training images; needs data), ``--timesteps T'``.
        budget: ``"cores=K"`` (or ``synapses=N``, ``synops=N``, ``memory_bits=N``): prune to fit.
        budget_criterion: how ``budget`` ranks channels (default ``activity`` with data).
        allow_semantic_change: compile although the target cannot keep the neuron semantics.
        finetune_samples: training samples for a fine-tuning ``adapt_semantics`` pass.
        train_epochs: ``--train-epochs N``: after a cut (``--budget`` or ``prune_channels``) and its repair, or
            after ``fold_timesteps`` (training at T'), train the model N epochs over the training split's fitting
            samples, distilled from the model before the cut, before quantizing.
        train_method: ``--train-method``: ``plain`` or ``spike-thrift`` (attention transfer, trained thresholds
            and leaks; :mod:`snnc.driver.methods`); ``train_synops``: the SynOps regulariser's weight.
    Mapping:
        target: target name or TOML path; ``lava``/``nir``/``onnx`` also write that export.
        formats: ``"auto"`` or ``"discrete"`` synapse formats.
        max_cores, max_chips: limits whose excess is a design-rule violation.
        objective: ``"cores"`` (the fewest cores, the placer's own), ``"latency"`` or ``"energy"`` (the least time
            or energy per inference among candidate mappings, priced by the calibration data's activity; needs data).
    Run:
        seed: seed of everything random; batch_size: samples per simulation batch;
        force: replace OUT when it is a previous snnc output.
    """
    # model
    trust_pickle: bool = False
    weights: str | None = None
    dt: float | None = None
    num_steps: int | None = None
    input_shape: tuple | None = None
    input_encoding: str | None = None
    reset: str | None = None
    semantics: str | None = None
    # data
    data: object = None
    data_dir: str | None = None
    limit: int | None = None
    encode: str | None = None
    # passes
    passes: str | list = DEFAULT_PIPELINE
    weight_bits: int | None = None
    per_channel: bool = False
    calibrate: int | None = None
    timesteps: int | None = None
    budget: str | None = None
    budget_criterion: str | None = None
    allow_semantic_change: bool = False
    finetune_samples: int = 2048
    train_epochs: int | None = None
    train_method: str = "plain"
    train_synops: float = 0.0
    # mapping
    target: str = "loihi-sim"
    formats: str = "auto"
    objective: str = "cores"
    max_cores: int | None = None
    max_chips: int | None = None
    # run
    seed: int = 0
    batch_size: int = 500
    force: bool = False
    device: str = "auto"

    @classmethod
    def from_kwargs(cls, **kwargs) -> "CompileOptions":
        """Options from keyword arguments (the Python API); unknown names are refused in one line."""
        return cls().replace(**kwargs)

    def replace(self, **changes) -> "CompileOptions":
        """These options with ``changes`` (field names), checked.

        Raises:
            UsageError: an unknown option name, or what :meth:`checked` refuses.
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise UsageError(f"unknown compile option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return dataclasses.replace(self, **changes).checked()

    def checked(self) -> "CompileOptions":
        """Refuse values and combinations that cannot work (before any work starts).

        Raises:
            UsageError: one line naming the option and what is allowed.
        """
        def one_of(name, value, allowed):
            if value is not None and value not in allowed:
                raise UsageError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        one_of("input encoding", self.input_encoding, INPUT_ENCODINGS)
        one_of("reset", self.reset, RESETS)
        one_of("semantics", self.semantics, SEMANTICS)
        one_of("encode", self.encode, ENCODERS)
        one_of("budget criterion", self.budget_criterion, tuple(CRITERIA))
        one_of("training method", self.train_method, TRAIN_METHODS)
        one_of("objective", self.objective, ("cores", "latency", "energy"))
        if self.objective != "cores" and not self.data:
            raise UsageError(f"--objective {self.objective} needs --data: the candidate mappings are priced by the "
                             "activity simulated on the calibration samples")
        if isinstance(self.train_synops, bool) or not isinstance(self.train_synops, numbers.Real) or \
                not self.train_synops >= 0:
            raise UsageError(f"the SynOps regulariser weight must be >= 0, got {self.train_synops!r}")
        if (self.train_method != "plain" or self.train_synops) and not self.train_epochs:
            raise UsageError("--train-method and --train-synops shape the training of --train-epochs N; give it")
        resolve_device(self.device)
        check_formats(self.formats)
        for name in ("limit", "max_cores", "max_chips", "calibrate", "timesteps", "batch_size", "finetune_samples",
                     "train_epochs"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
                raise UsageError(f"{name} must be a whole number >= 1, got {v!r}")
        if self.weight_bits is not None and (isinstance(self.weight_bits, bool) or self.weight_bits not in range(2, 9)):
            raise UsageError(f"weight bits must be a whole number in 2..8, got {self.weight_bits!r}")
        if self.dt is not None and (isinstance(self.dt, bool) or not isinstance(self.dt, numbers.Real)
                                    or not math.isfinite(self.dt) or self.dt <= 0):
            raise UsageError(f"dt must be a positive time in s, got {self.dt!r}")
        if isinstance(self.data, tuple):
            self.data = Splits.of(self.data)
        if self.data is not None and not isinstance(self.data, (str, Splits)):
            raise UsageError(f"data of type {type(self.data).__name__}: give a dataset name or path, a tuple "
                             "(x_train, y_train, x_test, y_test) or snnc.data.Splits(train=..., test=...)")
        if self.encode is not None and isinstance(self.data, str) and self.data.startswith("events:"):
            raise UsageError("--encode turns images into spikes; event data (--data events:...) is spikes already: "
                             "leave --encode out")
        if self.encode is not None and not self.data:
            raise UsageError("--encode turns the images of --data into spikes; give --data")
        if self.calibrate is not None and not self.data:
            raise UsageError("--calibrate needs --data: it calibrates the quantization on that dataset's training "
                             "images")
        if self.train_epochs is not None:
            passes = self.passes if isinstance(self.passes, str) else ",".join(n for n, _ in self.passes)
            if not self.data:
                raise UsageError("--train-epochs needs --data: it fine-tunes on that dataset's training split")
            if self.budget is None and "prune_channels" not in passes and "fold_timesteps" not in passes and \
                    self.timesteps is None:
                raise UsageError("--train-epochs trains a cut or folded model: give --budget RESOURCE=VALUE, a "
                                 "prune_channels pass in --passes, or --timesteps T'")
        if self.budget is not None and not self.data:
            raise UsageError("--budget needs --data with direct (image) input: it measures the accuracy of each "
                             "pruning step on held-out images")
        return self
