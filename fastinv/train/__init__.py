"""MoCo-v2 pre-training: configuration, model, loop, schedule, distributed helpers, monitoring."""
