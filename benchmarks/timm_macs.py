"""MACs of timm backbones (``dyce macs --model timm:NAME``) against timm's published figures.

For every model: the automatic taps, ``ori_macs`` with batch norm folded (dyce's default), the
same with batch norm at one MAC per element (the convention of timm's table, whose profiler
charges normalisation layers), and their relative difference to the published GMACs at 224 px
(``infer_gmacs`` of ``results/benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv`` in
huggingface/pytorch-image-models, two decimals). ``macs_info_for`` runs with one exit type
(the backbone figures do not depend on the exit types).

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/timm_macs.py [--threads 1] [--models a,b]

It prints a Markdown table (docs/models.md, timm backbones).
"""

from __future__ import annotations

import argparse
import time

import torch

from dyce.macs.counting import count_macs, macs_info_for
from dyce.network.models import build_backbone

PUBLISHED_GMACS = {  # timm's infer_gmacs at 224 px
    "convnextv2_atto": 0.55,
    "convnextv2_tiny": 4.47,
    "resnet18": 1.82,
    "resnet50": 4.11,
    "resnet152": 11.56,
    "davit_tiny": 4.54,
    "davit_base": 15.51,
    "deit_tiny_patch16_224": 1.26,
    "vit_base_patch16_224": 17.58,
    "swin_tiny_patch4_window7_224": 4.51,
    "efficientnet_b0": 0.40,
}


def measure(name: str) -> dict:
    """Taps and MACs of ``timm:name`` at 224 px (random weights)."""
    start = time.perf_counter()
    torch.manual_seed(0)
    backbone = build_backbone(f"timm:{name}", num_classes=1000).eval()
    info = macs_info_for(backbone, input_size=224, exit_types=["mlp1x1000"], name=f"timm:{name}")
    raw, _ = count_macs(backbone, (torch.zeros(1, 3, 224, 224),), fold_batchnorm=False)
    folded = info["backbone"]["ori_macs"]
    positions = info["backbone"]["positions"]
    return {
        "name": name,
        "taps": len(positions) - 1,
        "first": positions[0],
        "last": positions[-2],
        "folded": folded,
        "bn_one": folded + (raw - folded) / 2,  # thop charges batch norm 2 per element
        "first_share": info["backbone"]["macs"][0] / folded,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default=",".join(PUBLISHED_GMACS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model | taps | first … last | published GMACs | dyce (BN folded) | BN at 1 MAC/element "
          "| first tap / total | time |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        row = measure(name)
        published = PUBLISHED_GMACS[name] * 1e9
        print(
            f"| {name} | {row['taps']} | `{row['first']}` … `{row['last']}` "
            f"| {PUBLISHED_GMACS[name]:.2f} "
            f"| {row['folded'] / 1e9:.4f} ({row['folded'] / published - 1:+.2%}) "
            f"| {row['bn_one'] / 1e9:.4f} ({row['bn_one'] / published - 1:+.2%}) "
            f"| {row['first_share']:.1%} | {row['seconds']:.1f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
