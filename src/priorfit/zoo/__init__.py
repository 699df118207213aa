"""PFNs shipped inside the package: ``<name>.safetensors`` files with their model cards.

Every shipped model has a config under ``configs/<name>.toml`` that retrains it.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent


def names() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in _HERE.glob("*.safetensors"))


def path(name: str) -> Path:
    """File of the shipped model ``name``."""
    if name not in names():
        shipped = ", ".join(names()) or "none"
        raise ValueError(f"no shipped model {name!r}; shipped models: {shipped}")
    return _HERE / f"{name}.safetensors"
