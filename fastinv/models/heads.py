"""Projection heads attached as a backbone's `fc` (so keys are fc.0 / fc.2, as in MoCo-v2)."""
from torch import nn


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """MoCo-v2's head: Linear(in, hidden)-ReLU-Linear(hidden, out), no BN. hidden_dim 0 gives
    MoCo-v1's single Linear(in, out) (still wrapped, key fc.0)."""
    if in_dim < 1 or out_dim < 1 or hidden_dim < 0:
        raise ValueError(f"head dims must be positive (got in {in_dim}, hidden {hidden_dim}, out {out_dim})")
    if hidden_dim == 0:
        return nn.Sequential(nn.Linear(in_dim, out_dim))
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))
