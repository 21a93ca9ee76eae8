"""Targets: data (a TOML file with sources per section) plus a backend name.

``load_target("loihi-sim")`` reads ``snnc/targets/loihi-sim.toml``. A target
may be a path to a user TOML file with the same sections.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from snnc.errors import SnncError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TARGETS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Target:
    """A target description: ``name``, ``backend`` and the TOML tables as dicts."""
    name: str
    description: str
    backend: str
    data: dict
    path: Path | None = None

    def __getitem__(self, section: str) -> dict:
        return self.data[section]

    @property
    def sources(self) -> dict:
        return self.data.get("sources", {})

    @property
    def fixed_point(self):
        """The backend's fixed-point rules for this target (loihi: :class:`snnc.backends.loihi.discretize.
        FixedPoint`): what passes such as ``quantize`` discretise with, found by the backend's name so that
        a pass never imports a backend (the target is data; its backend is a plugin)."""
        module = importlib.import_module(f"snnc.backends.{self.backend}.discretize")
        return module.FixedPoint(self)


def available() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def load_target(name_or_path: str) -> Target:
    """Load a bundled target by name or a TOML file by path.

    Raises:
        ValueError: unknown target name (lists the known ones), an unreadable or invalid TOML file,
            or a description that breaks the schema (:func:`check_target`).
    """
    p = Path(name_or_path)
    if not (p.suffix == ".toml" and p.is_file()):
        p = TARGETS_DIR / f"{name_or_path}.toml"
        if not p.is_file():
            raise SnncError(f"unknown target {name_or_path!r}; known: {', '.join(available())}")
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise SnncError(f"{p}: not a valid TOML file ({e})") from None
    except OSError as e:
        raise SnncError(f"{p}: cannot be read ({e.strerror or e})") from None
    check_target(data, p)
    return Target(data["name"], data.get("description", ""), data["backend"], data, p.resolve())


_INT, _NUM = "int", "number"
#: What a ``loihi``-backend target must define: ``[section] key -> (type, min, max)``. Ranges are
#: what snnc's mapper and bit-accurate simulator can carry (int64 arithmetic) and what the names
#: mean (a count is >= 1, an energy >= 0); the bundled loihi-sim.toml gives Loihi 1's values.
LOIHI_SCHEMA = {
    "chip": {"cores": (_INT, 1, 2 ** 20), "cores_per_tile": (_INT, 1, 2 ** 20), "tiles_x": (_INT, 1, 2 ** 20),
             "tiles_y": (_INT, 1, 2 ** 20)},
    "core": {"neurons": (_INT, 1, 2 ** 24), "axons_in": (_INT, 1, 2 ** 24), "axons_out": (_INT, 1, 2 ** 24),
             "synapse_memory_bits": (_INT, 64, 2 ** 40)},
    "fixed_point": {"weight_exp_min": (_INT, -16, 0), "weight_exp_max": (_INT, 0, 16),
                    "vth_mant_max": (_INT, 1, 2 ** 24), "vth_shift": (_INT, 0, 16), "act_shift": (_INT, 0, 16),
                    "decay_bits": (_INT, 1, 16), "ds_offset": (_INT, 0, 1), "dm_offset": (_INT, 0, 1),
                    "uv_bits": (_INT, 8, 32), "syn_input_bits": (_INT, 8, 32), "bias_mant_bits": (_INT, 2, 24),
                    "bias_exp_max": (_INT, 0, 16), "max_delay": (_INT, 0, 1024)},
    "synapse_format": {"weight_bits": (_INT, 2, 8), "index_bits": ("int list", 0, 16),
                       "block_synapses": (_INT, 1, 2 ** 16), "header_bits": (_INT, 0, 2 ** 16),
                       "word_bits": (_INT, 1, 2 ** 16)},
    "energy_pJ": {k: (_NUM, 0.0, 1e9) for k in ("synop", "neuron_update_active", "neuron_update_inactive",
                                                "spike_in_tile", "hop_ew", "hop_ns", "synaptic_update",
                                                "ac_45nm", "mac_45nm")},
}
#: Tables a loihi-backend target must define (every key of :data:`LOIHI_SCHEMA`).
REQUIRED_SECTIONS = tuple(LOIHI_SCHEMA)
BACKENDS = ("loihi",)


def _check_value(kind, lo, hi, v) -> str | None:
    """None if ``v`` fits, else what is wrong with it."""
    if kind == "int list":
        if not isinstance(v, list) or not v or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
            return f"{v!r} is not a non-empty list of whole numbers"
        if any(x < lo or x > hi for x in v) or v != sorted(v):
            return f"{v!r} must be ascending whole numbers in {lo}..{hi}"
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind == _INT and not isinstance(v, int)):
        return f"{v!r} is not a {'whole number' if kind == _INT else 'number'}"
    if v != v or not lo <= v <= hi:
        return f"{v!r} is outside {lo}..{hi}"
    return None


def check_target(data: dict, path) -> None:
    """Validate a target description read from TOML (schema and ranges), all problems at once.

    Raises:
        ValueError: ``"<path>: ..."`` listing every missing key and every value of the wrong type
            or out of range.
    """
    problems = []
    for key in ("name", "backend"):
        if not isinstance(data.get(key), str) or not data.get(key):
            problems.append(f"{key} must be a non-empty string")
    if isinstance(data.get("backend"), str) and data["backend"] not in BACKENDS:
        problems.append(f"backend {data['backend']!r} is unknown (known: {', '.join(BACKENDS)})")
    if data.get("backend") == "loihi":
        missing = []
        for sec, keys in LOIHI_SCHEMA.items():
            table = data.get(sec)
            if not isinstance(table, dict):
                missing += [f"[{sec}].{k}" for k in keys]
                continue
            for k, (kind, lo, hi) in keys.items():
                if k not in table:
                    missing.append(f"[{sec}].{k}")
                    continue
                bad = _check_value(kind, lo, hi, table[k])
                if bad:
                    problems.append(f"[{sec}].{k} = {bad}")
        if missing:
            problems.insert(0, f"lacks {', '.join(missing)}")
        fp = data.get("fixed_point") if isinstance(data.get("fixed_point"), dict) else {}
        if isinstance(fp.get("weight_exp_min"), int) and isinstance(fp.get("weight_exp_max"), int) and \
                fp["weight_exp_min"] > fp["weight_exp_max"]:
            problems.append("[fixed_point] weight_exp_min > weight_exp_max")
    if problems:
        raise SnncError(f"{path}: invalid target file: {'; '.join(problems)} (see snnc/targets/loihi-sim.toml)")
