"""The file format of PFNs: safetensors tensors with a JSON model card in the header.

This module only maps tensors and a card to and from a file (and writes atomically); building a
model from them is :func:`priorfit.model.load`.

Only safetensors files written by priorfit are accepted. A pickle, a truncated file or a
safetensors file from another library is refused with a ``ValueError``; nothing is executed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

FORMAT = "priorfit-pfn"
FORMAT_VERSION = 1


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename into ``path``: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write(path: str | os.PathLike, tensors: dict[str, Tensor], card: dict) -> None:
    """Write ``tensors`` and the JSON ``card`` to ``path`` atomically."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "card": json.dumps(card)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[dict, dict]:
    """``(tensors, card)`` of a file written by :func:`write`; ``ValueError`` for anything else."""
    path = Path(path)
    metadata = _read_metadata(path)
    try:
        tensors = load_file(path, device=str(device))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is corrupted or truncated: {error}") from None
    try:
        card = json.loads(metadata["card"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} has an unreadable model card: {error}") from None
    if not isinstance(card, dict):
        raise ValueError(f"{path} has an unreadable model card: not a JSON object")
    return tensors, card


def _read_metadata(path: Path) -> dict:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is not a safetensors file (too short)")
        header_size = int.from_bytes(head, "little")
        if header_size > 100_000_000 or path.stat().st_size < 8 + header_size:
            raise ValueError(
                f"{path} is not a priorfit safetensors file (pickled checkpoints are refused, "
                "never unpickled); was it truncated?"
            )
        try:
            header = json.loads(f.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"{path} is not a safetensors file: unreadable header") from None
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{path} is a safetensors file but not a priorfit model (no priorfit model card)"
        )
    if int(metadata.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer priorfit; upgrade to read it")
    return metadata
