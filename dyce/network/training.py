"""Training: a backbone from scratch, and the exit heads of a frozen backbone.

Both use AdamW with a per-step cosine learning-rate schedule, shuffle with a generator seeded
from ``(seed, epoch)``, and after every epoch write a checkpoint (trainable state, optimiser,
scheduler, epoch, torch RNG states, history) atomically into ``checkpoint_dir``. A run that finds
a checkpoint there with the same settings resumes after its epoch, and ends with exactly the
weights an uninterrupted run would have (on CPU; on GPU up to non-deterministic kernels).

Exit training (DyCE): the backbone is frozen (eval mode, no gradients), the tap features and the
final logits are computed once per batch for all exits, and every exit ``e`` is trained on

    distill_weight * T^2 * KL(softmax(final / T) || softmax(exit_e / T))
    + (1 - distill_weight) * CE(exit_e, label)

summed over exits (each term a mean over the batch).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dyce.data.splits import load_split, load_splits
from dyce.errors import DyceError
from dyce.io import atomic_path, plain_value
from dyce.network.device import (
    autocast,
    check_amp,
    grad_scaler,
    loader_workers,
    pin_memory,
    resolve_device,
)
from dyce.network.timm_backbones import model_transform

BACKBONE_FORMAT = "dyce-backbone"
CHECKPOINT_FORMAT = "dyce-training-checkpoint"
FORMAT_VERSION = 1


class TrainResult(NamedTuple):
    """What a training function returns.

    ``model``: the trained module (on ``device``); ``spec``: how to rebuild it;
    ``history``: one dict per epoch (``epoch``, ``loss`` mean per sample, ``accuracy``
    top-1 on the augmented training batches, a list per exit for exit training).
    """

    model: nn.Module
    spec: dict[str, Any]
    history: list[dict[str, Any]]


def _check_hyperparameters(epochs: int, lr: float, batch_size: int, weight_decay: float) -> None:
    if epochs < 1:
        raise DyceError(f"must be at least 1, got {epochs}", field="epochs")
    if not lr > 0:
        raise DyceError(f"must be positive, got {lr}", field="lr")
    if batch_size < 1:
        raise DyceError(f"must be at least 1, got {batch_size}", field="batch_size")
    if weight_decay < 0:
        raise DyceError(f"must not be negative, got {weight_decay}", field="weight_decay")


def _epoch_loader(
    dataset: Dataset, batch_size: int, seed: int, epoch: int, num_workers: int, device: torch.device
) -> DataLoader:
    """Shuffled loader of one epoch; the order depends only on ``(seed, epoch)``.

    A feature cache (:class:`dyce.network.features.CachedBatches`) is read a whole batch per index
    list, in the same batches as the images would be.
    """
    from dyce.network.features import CachedBatches, epoch_loader

    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if isinstance(dataset, CachedBatches):
        return epoch_loader(dataset, batch_size, generator, device)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=generator,
        drop_last=len(dataset) > batch_size, num_workers=num_workers,
        pin_memory=pin_memory(device), persistent_workers=False,
    )


def _to_device(inputs: Any, device: torch.device) -> Any:
    """A tensor, or nested tuples/lists of tensors, moved to ``device``."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    return type(inputs)(_to_device(item, device) for item in inputs)


def _steps_per_epoch(dataset: Dataset, batch_size: int) -> int:
    count = len(dataset)
    return count // batch_size if count > batch_size else 1


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_files(checkpoint_dir: Path) -> list[Path]:
    return sorted(checkpoint_dir.glob("epoch_*.pt"))


def _load_checkpoint(checkpoint_dir: Path | None, settings: dict[str, Any]) -> dict | None:
    """The latest checkpoint in ``checkpoint_dir`` (checked against ``settings``), or None."""
    if checkpoint_dir is None:
        return None
    files = _checkpoint_files(checkpoint_dir)
    if not files:
        return None
    path = files[-1]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise DyceError(f"cannot read checkpoint: {error}", path=path) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DyceError("not a dyce training checkpoint", path=path, field="format")
    saved = state.get("settings", {})
    for key in [*settings, *(key for key in saved if key not in settings)]:
        value = settings.get(key)
        if saved.get(key) != value:
            raise DyceError(
                f"checkpoint was made with {key}={saved.get(key)!r}, this run has {value!r}; "
                "use another --checkpoint-dir or the same settings",
                path=path, field=key,
            )
    return state


def _save_checkpoint(checkpoint_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``epoch_NNNN.pt`` atomically, then remove older epoch files."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_dir / f"epoch_{state['epoch']:04d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for older in _checkpoint_files(checkpoint_dir):
        if older != path:
            older.unlink(missing_ok=True)
    return path


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# --------------------------------------------------------------------------- the loop


def _fit(
    *,
    trainable: nn.Module,
    set_mode: Callable[[], None],
    step: Callable[[Any, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    dataset: Dataset,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    device: torch.device,
    checkpoint_dir: str | os.PathLike | None,
    settings: dict[str, Any],
    num_workers: int,
    desc: str,
    amp: str = "off",
) -> list[dict[str, Any]]:
    """Train the parameters of ``trainable`` that require grad; returns the history.

    ``step(inputs, labels)`` returns ``(loss, correct)``: the scalar loss of the batch and the
    number of correct top-1 predictions (a tensor, one entry per head); it runs under the mixed
    precision ``amp`` (fp16 on CUDA with a loss scaler).
    """
    params = [p for p in trainable.parameters() if p.requires_grad]
    if not params:
        raise DyceError("nothing to train: no parameter requires grad", field="model")
    # The fused kernel updates all parameters in one pass (about 5x faster on CPU for the ten
    # million parameters of the default exit heads), computing the same AdamW update.
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    total_steps = epochs * _steps_per_epoch(dataset, batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    scaler = grad_scaler(device, amp)
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    resumed = _load_checkpoint(folder, settings)
    if resumed is not None:
        trainable.load_state_dict(resumed["model_state"])
        optimizer.load_state_dict(resumed["optimizer_state"])
        scheduler.load_state_dict(resumed["scheduler_state"])
        _restore_rng_states(resumed["rng_states"])
        if scaler.is_enabled() and "scaler_state" in resumed:
            scaler.load_state_dict(resumed["scaler_state"])
        history = list(resumed["history"])
        start_epoch = int(resumed["epoch"])
    for epoch in range(start_epoch, epochs):
        set_mode()
        loader = _epoch_loader(dataset, batch_size, seed, epoch, num_workers, device)
        loss_sum, correct_sum, seen = 0.0, None, 0
        bar = tqdm(loader, desc=f"{desc} {epoch + 1}/{epochs}", unit="batch", leave=False)
        for inputs, labels, _ in bar:
            inputs = _to_device(inputs, device)
            labels = labels.to(device, non_blocking=True)
            with autocast(device, amp):
                loss, correct = step(inputs, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(labels)
            correct = correct.detach().double().cpu()
            correct_sum = correct if correct_sum is None else correct_sum + correct
            seen += len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", refresh=False)
        bar.close()
        accuracy = (correct_sum / seen).tolist()
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "accuracy": accuracy})
        if folder is not None:
            _save_checkpoint(folder, {
                "format": CHECKPOINT_FORMAT,
                "version": FORMAT_VERSION,
                "epoch": epoch + 1,
                "settings": settings,
                "model_state": trainable.state_dict(),
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "rng_states": _rng_states(),
                "history": history,
                **({"scaler_state": scaler.state_dict()} if scaler.is_enabled() else {}),
            })
    return history


# --------------------------------------------------------------------------- backbone


def backbone_spec(splits: Mapping[str, Any], model_name: str) -> dict[str, Any]:
    """How to rebuild a backbone trained on ``splits``: name, classes, channels, input size."""
    return {
        "model": model_name,
        "num_classes": int(splits["num_classes"]),
        "in_channels": int(splits["in_channels"]),
        "input_size": int(splits["image_size"]),
        "dataset": splits["dataset"],
    }


def train_backbone(
    splits: str | os.PathLike | Mapping[str, Any],
    model_name: str,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    device: str | torch.device = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    num_workers: int | str = 0,
    amp: str = "off",
) -> TrainResult:
    """Train backbone ``model_name`` (random init, cross-entropy) on the ``train`` split.

    ``num_workers``: DataLoader processes, or ``"auto"`` (:func:`dyce.network.device.loader_workers`);
    ``amp``: mixed precision ``off``, ``bf16`` or ``fp16`` (:mod:`dyce.network.device`).
    """
    from dyce.network.models import build_backbone

    _check_hyperparameters(epochs, lr, batch_size, weight_decay)
    check_amp(amp)
    info = load_splits(splits)
    spec = backbone_spec(info, model_name)
    target = resolve_device(device)
    num_workers = loader_workers(num_workers, target)
    torch.manual_seed(seed)
    model = build_backbone(
        model_name, num_classes=spec["num_classes"], in_channels=spec["in_channels"],
        input_size=spec["input_size"],
    ).to(target)
    dataset = load_split(
        info, "train", train_transforms=True, transform=model_transform(model, info, train=True)
    )

    def step(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(images)
        return F.cross_entropy(logits, labels), (logits.argmax(-1) == labels).sum().unsqueeze(0)

    settings = {
        "kind": "backbone", "spec": spec, "epochs": epochs, "lr": lr, "batch_size": batch_size,
        "weight_decay": weight_decay, "seed": seed, "train_size": len(dataset),
        **({"amp": amp} if amp != "off" else {}),
    }
    history = _fit(
        trainable=model, set_mode=model.train, step=step, dataset=dataset, epochs=epochs, lr=lr,
        batch_size=batch_size, weight_decay=weight_decay, seed=seed, device=target,
        checkpoint_dir=checkpoint_dir, settings=settings, num_workers=num_workers,
        desc="backbone epoch", amp=amp,
    )
    model.eval()
    return TrainResult(model, spec, history)


def save_backbone(
    path: str | os.PathLike, model: nn.Module, spec: Mapping[str, Any],
    history: list[dict[str, Any]] | None = None, metrics: Mapping[str, float] | None = None,
) -> None:
    """Write ``BACKBONE.pt`` atomically: ``{format, version, spec, state_dict, history, metrics}``."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    payload = {
        "format": BACKBONE_FORMAT, "version": FORMAT_VERSION, "spec": dict(spec),
        "state_dict": state, "history": list(history or []), "metrics": dict(metrics or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_backbone(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``BACKBONE.pt`` (``weights_only``): returns ``(state_dict, spec)``."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise DyceError("file not found", path=path) from error
    except Exception as error:  # torch raises several types for a damaged or foreign file
        raise DyceError(f"cannot read backbone file: {error}", path=path) from error
    if not isinstance(payload, dict) or payload.get("format") != BACKBONE_FORMAT:
        raise DyceError("not a dyce backbone file (dyce train-backbone)", path=path, field="format")
    for key in ("spec", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise DyceError("missing", path=path, field=key)
    return payload["state_dict"], payload["spec"]


@torch.inference_mode()
def evaluate_accuracy(
    model: nn.Module, dataset: Dataset, *, batch_size: int = 256,
    device: str | torch.device = "auto",
) -> float:
    """Top-1 accuracy (0..1) of a classifier ``model(images) -> logits (B, C)`` on ``dataset``."""
    target = resolve_device(device)
    model.eval().to(target)
    correct = seen = 0
    for images, labels, _ in DataLoader(dataset, batch_size=batch_size):
        logits = model(images.to(target))
        correct += int((logits.argmax(-1).cpu() == labels).sum())
        seen += len(labels)
    return correct / seen if seen else float("nan")


# --------------------------------------------------------------------------- exits


def distillation_loss(
    exit_logits: torch.Tensor, final_logits: torch.Tensor, labels: torch.Tensor, *,
    temperature: float, distill_weight: float,
) -> torch.Tensor:
    """DyCE exit loss, summed over exits, each a batch mean.

    ``exit_logits`` ``(B, N, C)``, ``final_logits`` ``(B, C)`` (teacher, no grad), ``labels``
    ``(B,)``. Returns a scalar.
    """
    loss = exit_logits.new_zeros(())
    if distill_weight > 0:
        teacher_log = F.log_softmax(final_logits.detach() / temperature, dim=-1).unsqueeze(1)
        student_log = F.log_softmax(exit_logits / temperature, dim=-1)
        kl = (teacher_log.exp() * (teacher_log - student_log)).sum(-1)  # (B, N)
        loss = loss + distill_weight * temperature**2 * kl.mean(0).sum()
    if distill_weight < 1:
        batch, exits, classes = exit_logits.shape
        ce = F.cross_entropy(
            exit_logits.reshape(batch * exits, classes),
            labels.repeat_interleave(exits), reduction="none",
        ).reshape(batch, exits)
        loss = loss + (1 - distill_weight) * ce.mean(0).sum()
    return loss


def prepare_exit_network(
    splits: str | os.PathLike | Mapping[str, Any],
    model_name: str,
    *,
    backbone_path: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    taps: str | list[str] | None = "auto",
    exit_types: str | list[str] | None = None,
    seed: int = 0,
) -> nn.Module:
    """A ``MultiExitNetwork`` (on CPU, backbone frozen, exits freshly initialised from ``seed``).

    The backbone comes from ``backbone_path`` (``BACKBONE.pt`` of :func:`train_backbone`; its
    spec must match ``model_name`` and the data) or from ``weights`` (torchvision weights name
    or state-dict file; ``None`` = random). ``taps``: ``"auto"`` or node names; ``exit_types``:
    ``mlp{L}x{W}`` names (default: the paper's five).
    """
    from dyce.network.models import MultiExitNetwork, build_backbone, load_backbone_state

    if backbone_path is not None and weights is not None:
        raise DyceError("give a trained backbone or weights, not both", field="weights")
    info = load_splits(splits)
    expected = backbone_spec(info, model_name)
    state = None
    if backbone_path is not None:
        state, saved = load_backbone(backbone_path)
        for key in ("model", "num_classes", "in_channels", "input_size"):
            if saved.get(key) != expected[key]:
                raise DyceError(
                    f"backbone has {key}={saved.get(key)!r}, but the model and data need "
                    f"{expected[key]!r}", path=backbone_path, field=key,
                )
    torch.manual_seed(seed)
    backbone = build_backbone(
        model_name, num_classes=expected["num_classes"],
        weights=None if state is not None else weights,
        in_channels=expected["in_channels"], input_size=expected["input_size"],
    )
    if state is not None:
        load_backbone_state(backbone, state, source=backbone_path)
    return MultiExitNetwork(
        backbone, taps, exit_types, expected["num_classes"], input_size=expected["input_size"],
        in_channels=expected["in_channels"], model_name=model_name,
        weights=None if state is not None else weights, device="cpu",
    )


def train_exits(
    splits: str | os.PathLike | Mapping[str, Any],
    net: nn.Module,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    temperature: float,
    distill_weight: float,
    seed: int,
    device: str | torch.device = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    num_workers: int | str = 0,
    amp: str = "off",
    features: str | os.PathLike | None = None,
) -> TrainResult:
    """Train every exit head of ``net`` (a ``MultiExitNetwork``) jointly on the ``train`` split.

    The backbone is frozen. The initial exit weights are those ``net`` arrives with (seed the
    construction for reproducibility); ``seed`` fixes the shuffling and augmentation.

    With ``features`` (a cache folder of the ``train`` split written by
    :func:`dyce.network.features.cache_features` with ``net``'s backbone) the heads train on the cached
    pooled features and final logits: the backbone never runs, and there is no augmentation
    (the cache holds the evaluation transforms). The batches are the same as without a cache.
    ``num_workers`` and ``amp`` as in :func:`train_backbone`.
    """
    _check_hyperparameters(epochs, lr, batch_size, weight_decay)
    if not temperature > 0:
        raise DyceError(f"must be positive, got {temperature}", field="temperature")
    if not 0.0 <= distill_weight <= 1.0:
        raise DyceError(f"must lie in [0, 1], got {distill_weight}", field="distill_weight")
    info = load_splits(splits)
    spec = dict(net.spec)
    if int(spec.get("num_classes", info["num_classes"])) != int(info["num_classes"]):
        raise DyceError(
            f"model has {spec['num_classes']} classes, data has {info['num_classes']}",
            path=info["_source"], field="num_classes",
        )
    check_amp(amp)
    target = resolve_device(device)
    num_workers = loader_workers(num_workers, target)
    net.freeze_backbone()
    net.to(target)
    torch.manual_seed(seed)
    if features is None:
        dataset = load_split(
            info, "train", train_transforms=True,
            transform=model_transform(net.backbone, info, train=True),
        )
    else:
        from dyce.network.features import CachedBatches, check_cache_fits, open_feature_cache

        cache = open_feature_cache(features)
        check_cache_fits(cache, net, split="train", sample_ids=info["splits"]["train"])
        dataset = CachedBatches(cache)

    def set_mode() -> None:
        net.eval()
        net.exit_heads.train()

    def step(inputs: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if features is None:
            with torch.no_grad():
                tapped, final_logits = net.tap_features(inputs)
            exit_logits = net.exit_logits_from_features(tapped)
        else:
            from dyce.network.features import exit_logits_from_pooled

            pooled, final_logits = inputs
            exit_logits = exit_logits_from_pooled(net, pooled)
        loss = distillation_loss(
            exit_logits, final_logits, labels,
            temperature=temperature, distill_weight=distill_weight,
        )
        correct = torch.cat([
            (exit_logits.argmax(-1) == labels[:, None]).sum(0),
            (final_logits.argmax(-1) == labels).sum().unsqueeze(0),
        ])
        return loss, correct

    settings = {
        "kind": "exits", "spec": plain_value(spec), "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "weight_decay": weight_decay, "temperature": temperature,
        "distill_weight": distill_weight, "seed": seed, "train_size": len(dataset),
        **({"amp": amp} if amp != "off" else {}),
        **({"feature_cache": True} if features is not None else {}),
    }
    history = _fit(
        trainable=net.exit_heads, set_mode=set_mode, step=step, dataset=dataset, epochs=epochs,
        lr=lr, batch_size=batch_size, weight_decay=weight_decay, seed=seed, device=target,
        checkpoint_dir=checkpoint_dir, settings=settings, num_workers=num_workers,
        desc="exits epoch", amp=amp,
    )
    net.eval()
    return TrainResult(net, spec, history)
