"""Where and how the model side runs: device, mixed precision, data-loading workers.

- :func:`resolve_device`: ``"auto"`` is CUDA when present, else the CPU.
- :func:`autocast`: mixed precision (``amp`` ``"off"``, ``"bf16"`` or ``"fp16"``) as a context
  manager. On CUDA both half types run under ``torch.autocast``; on the CPU ``bf16`` runs under
  CPU autocast (only when asked) and ``fp16`` is a no-op (CPU half-precision matmuls are slower
  than float32), so one configuration serves a GPU cluster and a CPU test run.
- :func:`grad_scaler`: the loss scaler fp16 training needs on CUDA (disabled elsewhere).
- :func:`loader_workers`: DataLoader worker processes from the CPUs a job was given. On the CPU
  the main process computes with every core, so data loads in it (0 workers); on CUDA all but
  one core load data while the main process feeds the GPU. Pinned memory is used exactly when
  the device is CUDA (:func:`pin_memory`).
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from dyce.errors import DyceError

AMP_CHOICES: tuple[str, ...] = ("off", "bf16", "fp16")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; anything else as ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise DyceError(f"unknown device '{device}'", field="device") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DyceError("CUDA requested but not available", field="device")
    return resolved


def check_amp(amp: str) -> str:
    """``amp`` if it is one of :data:`AMP_CHOICES`, else :class:`DyceError` naming ``amp``."""
    if amp not in AMP_CHOICES:
        raise DyceError(f"must be one of {', '.join(AMP_CHOICES)}, got {amp!r}", field="amp")
    return amp


def effective_amp(device: torch.device, amp: str) -> str:
    """The precision that actually runs: ``fp16`` on the CPU is ``off`` (see the module doc)."""
    check_amp(amp)
    if device.type == "cpu" and amp == "fp16":
        return "off"
    return amp


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """Context manager running its block in the mixed precision ``amp`` on ``device``.

    Outputs of autocast regions may be bfloat16/float16: cast them (``.float()``) before
    softmax, losses or storage.
    """
    used = effective_amp(device, amp)
    if used != amp:
        warnings.warn(f"amp={amp} is not used on the CPU; running in float32", stacklevel=2)
    if used == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AMP_DTYPES[used])


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """Loss scaler for training: enabled only for fp16 on CUDA (bf16 needs none)."""
    enabled = device.type == "cuda" and effective_amp(device, amp) == "fp16"
    return torch.amp.GradScaler(device.type if enabled else "cpu", enabled=enabled)


def available_cpus() -> int:
    """CPUs this process may run on (the job's allocation under Slurm or cgroups)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def loader_workers(workers: int | str, device: torch.device, cpus: int | None = None) -> int:
    """DataLoader worker processes: ``workers`` as given, or for ``"auto"`` 0 on the CPU and
    ``cpus - 1`` on CUDA (``cpus`` defaults to :func:`available_cpus`)."""
    if workers == "auto":
        if device.type == "cpu":
            return 0
        return max((available_cpus() if cpus is None else int(cpus)) - 1, 0)
    try:
        count = int(workers)
    except (TypeError, ValueError):
        raise DyceError(f"must be 'auto' or a count, got {workers!r}", field="workers") from None
    if count < 0:
        raise DyceError(f"must not be negative, got {count}", field="workers")
    return count


def pin_memory(device: torch.device) -> bool:
    """Page-locked host batches, for fast asynchronous copies: on CUDA only."""
    return device.type == "cuda"
