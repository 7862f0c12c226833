"""Decode + augment pipelines (torch, DALI, FFCV) and augmentation recipes."""
