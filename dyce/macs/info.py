"""``macs_info``: MACs of the backbone and of every exit, in the original DyCE JSON format.

    {"head": [{"name": "mlp1x1000", "macs": [..P..], "params": [...]}, ...],
     "backbone": {"name": "...", "macs": [..P..], "ori_macs": int},
     "shared": {"macs": [..P..]}}            # optional, added to backbone.macs

``head[k].macs[p]`` = MACs of exit type k at position p (0 at the last position);
``backbone.macs[p]`` = cumulative backbone MACs before the exit at p (last = whole model).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dyce.errors import DyceError
from dyce.io import write_json


@dataclass(frozen=True, eq=False)
class MacsInfo:
    """Validated MACs table.

    Attributes:
        head_names: ``T`` exit-type names.
        head_macs: float64 ``(T, P)``, MACs of exit type k at position p.
        backbone_macs: float64 ``(P,)``, cumulative backbone MACs before each position, with
            ``shared.macs`` already added.
        ori_macs: MACs of the original model.
        raw: the JSON dictionary as given (written back unchanged).
        source: file it was read from (for error messages), or ``None``.
    """

    head_names: tuple[str, ...]
    head_macs: np.ndarray
    backbone_macs: np.ndarray
    ori_macs: int
    raw: dict
    source: str | None = None

    @property
    def num_positions(self) -> int:
        return int(self.backbone_macs.shape[0])

    @property
    def num_exit_types(self) -> int:
        return len(self.head_names)

    @property
    def heads_named(self) -> bool:
        """Whether every head of the JSON has a ``name`` (otherwise names are ``exit{k}``)."""
        return all(isinstance(head, dict) and "name" in head for head in self.raw.get("head", []))


def _int_list(values: Any, where: str | None, field_name: str) -> np.ndarray:
    if not isinstance(values, list) or not values:
        raise DyceError("must be a non-empty list of numbers", path=where, field=field_name)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise DyceError(f"entry {i} is {v!r}; MACs must be finite and >= 0",
                            path=where, field=field_name)
        out[i] = v
    return out


def parse_macs_info(data: dict, source: str | os.PathLike | None = None) -> MacsInfo:
    """Validate a ``macs_info`` dictionary and return a :class:`MacsInfo`."""
    where = None if source is None else str(source)
    if not isinstance(data, dict):
        raise DyceError("macs_info must be a JSON object", path=where)
    heads = data.get("head")
    if not isinstance(heads, list) or not heads:
        raise DyceError("must be a non-empty list of exit types", path=where, field="head")
    backbone = data.get("backbone")
    if not isinstance(backbone, dict):
        raise DyceError("missing or not an object", path=where, field="backbone")
    bb = _int_list(backbone.get("macs"), where, "backbone.macs")
    num_positions = bb.shape[0]
    if "shared" in data:
        shared = data["shared"]
        if not isinstance(shared, dict):
            raise DyceError("must be an object with 'macs'", path=where, field="shared")
        sh = _int_list(shared.get("macs"), where, "shared.macs")
        if sh.shape != bb.shape:
            raise DyceError(
                f"has {sh.shape[0]} entries, backbone.macs has {num_positions}",
                path=where, field="shared.macs",
            )
        bb = bb + sh
    ori = backbone.get("ori_macs")
    if isinstance(ori, bool) or not isinstance(ori, (int, float)) or not math.isfinite(ori) \
            or ori <= 0:
        raise DyceError(f"is {ori!r}; must be a positive number",
                        path=where, field="backbone.ori_macs")
    names, rows = [], []
    for k, head in enumerate(heads):
        if not isinstance(head, dict):
            raise DyceError("must be an object", path=where, field=f"head[{k}]")
        names.append(str(head.get("name", f"exit{k}")))
        row = _int_list(head.get("macs"), where, f"head[{k}].macs")
        if row.shape[0] != num_positions:
            raise DyceError(
                f"has {row.shape[0]} entries, backbone.macs has {num_positions}",
                path=where, field=f"head[{k}].macs",
            )
        rows.append(row)
    return MacsInfo(
        head_names=tuple(names),
        head_macs=np.asarray(rows, dtype=np.float64),
        backbone_macs=bb,
        ori_macs=ori,
        raw=data,
        source=where,
    )


def load_macs_info(source: str | os.PathLike | dict | MacsInfo) -> MacsInfo:
    """Read and validate ``macs_info`` from a JSON path, a dictionary or a :class:`MacsInfo`."""
    if isinstance(source, MacsInfo):
        return source
    if isinstance(source, dict):
        return parse_macs_info(source)
    path = Path(source)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DyceError("file not found", path=path) from None
    except OSError as error:
        raise DyceError(f"cannot be read ({error.strerror})", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DyceError(f"not valid JSON ({error})", path=path) from None
    return parse_macs_info(data, source=path)


def save_macs_info(path: str | os.PathLike, data: dict) -> None:
    """Validate ``data`` and write it as JSON atomically."""
    parse_macs_info(data, source=path)
    write_json(path, data)
