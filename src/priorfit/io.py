"""Saving and loading PFNs: safetensors weights with a JSON model card in the header.

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

from priorfit import zoo
from priorfit.model.transformer import PFN, ModelConfig
from priorfit.schema import dataclass_from_dict

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


def save(model: PFN, path: str | os.PathLike, *, half: bool = False) -> None:
    """Write ``model``'s weights and card to ``path`` (``half``: store weights as float16)."""
    card = {**model.card, "model": vars(model.config).copy()}
    tensors = {
        name: (t.half() if half and t.is_floating_point() and name != "borders" else t)
        .detach()
        .cpu()
        .contiguous()
        for name, t in model.state_dict().items()
    }
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "card": json.dumps(card)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu") -> PFN:
    """Load a PFN from a file written by :func:`save`, or by name from the shipped zoo."""
    path = Path(name_or_path)
    if not path.is_file():
        if str(name_or_path) in zoo.names():
            path = zoo.path(str(name_or_path))
        else:
            raise ValueError(
                f"{str(name_or_path)!r} is neither a file nor a shipped model; "
                f"shipped models: {', '.join(zoo.names()) or 'none'}"
            )
    metadata = _read_metadata(path)
    try:
        tensors = load_file(path, device=str(device))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is corrupted or truncated: {error}") from None
    try:
        card = json.loads(metadata["card"])
        config = dataclass_from_dict(ModelConfig, card["model"], "model card")
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} has an unreadable model card: {error}") from None
    model = PFN(config, borders=tensors.get("borders"))
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match its model card: missing {missing}, unexpected {unexpected}"
        )
    model.card = card
    return model.to(device).eval()


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
