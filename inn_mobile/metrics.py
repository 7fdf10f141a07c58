"""Evaluation shared by packing, the CLI and the benchmarks."""

from __future__ import annotations

import torch


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, *, batch: int = 1000) -> float:
    """Top-1 accuracy in percent of a module or any callable model (e.g. a runtime loader)."""
    if isinstance(model, torch.nn.Module):
        model.eval()
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return 100.0 * correct / len(y)
