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
        data = tomllib.load(f)
    for key in ("name", "backend"):
        if key not in data:
            raise ValueError(f"{p}: target file lacks {key!r}")
    return Target(data["name"], data.get("description", ""), data["backend"], data, p.resolve())
