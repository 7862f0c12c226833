"""Evaluation: feature extraction with an on-disk cache, the suites, and the runner."""
