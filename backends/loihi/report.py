"""loihi-sim's sections of report.json that need the backend: ``quantization`` (per-core
parameter-set tables against the target's profile limits) and reading a compile output folder's
report back after validating its configuration (``snnc inspect``). The target-independent parts
(the report's layout, the terminal table, the utilisation plot) are :mod:`snnc.io.report`.
"""
from __future__ import annotations

import json
from pathlib import Path

from snnc.errors import SnncError
from snnc.backends.loihi.mapping import target_section
from snnc.backends.loihi.rules import PROFILE_RULES, profile_counts
from snnc.backends.loihi.sim import load_program
from snnc.io.report import _plain, check_report

SCALES_DEFINITION = {
    "max": "per projection, the weight exponent that fits the largest weight at the group's voltage scale "
           "(the scale is set by the group's other limits)",
    "mse": "per projection (or per output channel), the clip level among 64 fractions of the largest |weight| "
           "that minimises the projection's output squared error on the calibration images (exact, from the "
           "second moments of its inputs); the group's scale then maps that level to the largest mantissa",
}


def quantization_section(config: dict, arrays: dict, target, pipeline_log: list, metrics: dict | None,
                         calibration_images: int) -> dict:
    """report.json ``quantization``: the quantize options, per group the scale's limit, the weights
    clipped to the mantissa range, per-channel scales (applied, exact, why), the saturation/overflow
    counters of the simulation; the per-core parameter-set tables (vth, compartment, synapse formats)
    used against the target's limits; the time-step folding when ``fold_timesteps`` ran."""
    q = next((e for e in reversed(pipeline_log or []) if e["pass"] == "quantize"), None)
    opts = q["options"] if q else {}
    notes = (q["notes"].get("groups", {}) if q else {})
    over = (metrics or {}).get("overflow", {}).get("groups", {})
    groups = {}
    for g in config["groups"]:
        n = notes.get(g["name"], {})
        e = {"scale_limited_by": n.get("limited_by"), "weights": int(n.get("weights", 0)),
             "weights_clipped": int(n.get("weights_clipped", 0)), "clipped_share": float(n.get("clipped_share", 0.0)),
             "per_channel": n.get("per_channel", {"applied": False})}
        for k in ("clip_ratio", "clip_ratio_mean", "mantissa_fill", "scale_min", "scale_max"):
            if k in n:
                e[k] = n[k]
        if g["name"] in over:
            e["overflow"] = over[g["name"]]
        groups[g["name"]] = e
    rows = profile_counts(config["cores"], config["groups"], arrays)
    lim = target_section(target, "profiles")
    out = {"weight_bits": opts.get("weight_bits"), "scales": opts.get("scales", "max"),
           "scales_definition": SCALES_DEFINITION.get(opts.get("scales", "max")),
           "per_channel": bool(opts.get("per_channel", False)), "calibration_images": int(calibration_images),
           "num_steps": int(config["num_steps"]), "groups": groups,
           "profiles": {"max_per_core": {k: max((r[k] for r in rows), default=0) for k, _ in PROFILE_RULES.values()},
                        "limits": {v: lim.get(v) for _, v in PROFILE_RULES.values()},
                        "source": target.sources.get("profiles")}}
    f = next((e for e in reversed(pipeline_log or []) if e["pass"] == "fold_timesteps"), None)
    if f and f["notes"].get("k", 1) > 1:
        fn = f["notes"]
        out["timesteps"] = {k: fn[k] for k in ("k", "from_steps", "steps", "recalibrated", "threshold_factors",
                                                "agreement_with_T", "calibration_accuracy", "spikes_per_image",
                                                "decays") if k in fn}
    return _plain(out)


def load_report(out_dir) -> dict:
    """Read ``report.json`` of a compile output folder, after validating the folder's configuration
    (:func:`snnc.backends.loihi.sim.load_program`) and the report's own structure.

    Raises:
        ValueError: not a compile output folder, unreadable JSON, a configuration outside the target's
            ranges, or a report that lacks what ``snnc inspect`` shows or disagrees with the configuration.
    """
    out_dir = Path(out_dir)
    rep_path = out_dir / "report.json"
    if not rep_path.is_file():
        raise SnncError(f"{out_dir}: not a compile output folder (no report.json)")
    program = load_program(out_dir)
    try:
        rep = json.loads(rep_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SnncError(f"{rep_path}: not readable JSON ({str(e).splitlines()[0]})") from None
    check_report(rep, rep_path)
    if rep["target"] != program.config["target"] or len(rep["cores"]) != len(program.config["cores"]):
        raise SnncError(f"{rep_path}: does not match config.json (target or number of cores differ)")
    return rep


