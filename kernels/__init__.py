"""Device math on tensors: statistics, distances and whole-grid solvers."""
