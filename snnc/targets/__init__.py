"""Targets: data (a TOML file with sources per section) plus a backend name.

``load_target("loihi-sim")`` reads ``snnc/targets/loihi-sim.toml``. A target
may be a path to a user TOML file with the same sections.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

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


def available() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def load_target(name_or_path: str) -> Target:
    """Load a bundled target by name or a TOML file by path.

    Raises:
        ValueError: unknown target name (lists the known ones), or a file without name/backend.
    """
    p = Path(name_or_path)
    if not (p.suffix == ".toml" and p.is_file()):
        p = TARGETS_DIR / f"{name_or_path}.toml"
        if not p.is_file():
            raise ValueError(f"unknown target {name_or_path!r}; known: {', '.join(available())}")
    with open(p, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{p}: not a valid TOML file ({e})") from None
    for key in ("name", "backend"):
        if key not in data:
            raise ValueError(f"{p}: target file lacks {key!r}")
    if data["backend"] == "loihi" and p.resolve() != (TARGETS_DIR / "loihi-sim.toml").resolve():
        ref = load_target("loihi-sim").data
        missing = [f"[{sec}].{k}" for sec in REQUIRED_SECTIONS for k in ref[sec]
                   if not isinstance(data.get(sec), dict) or k not in data[sec]]
        if missing:
            raise ValueError(f"{p}: target file lacks {', '.join(missing)} (see snnc/targets/loihi-sim.toml)")
    return Target(data["name"], data.get("description", ""), data["backend"], data, p.resolve())


#: Tables a loihi-backend target must define, with every key of the bundled loihi-sim.toml.
REQUIRED_SECTIONS = ("chip", "core", "fixed_point", "synapse_format", "energy_pJ")
