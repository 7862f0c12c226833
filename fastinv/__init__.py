"""fastinv: pre-train MoCo-v2 under chosen augmentation recipes and measure what they learned."""

__version__ = "0.1.0"
