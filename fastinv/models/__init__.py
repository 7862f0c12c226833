"""Backbones (a registry of ResNets), projection heads, checkpoint formats, import and export."""
from fastinv.models.backbone import feature_dim, load_backbone, random_backbone
from fastinv.models.export import backbone_tensors, export_backbone
from fastinv.models.formats import FORMATS, CheckpointFormat, backbone_state, detect_format
from fastinv.models.heads import mlp_head
from fastinv.models.norm import SplitBatchNorm2d, norm_layer
from fastinv.models.resnet import ARCHS, ScaledResNet, build_resnet, parse_arch

__all__ = [
    "ARCHS", "FORMATS", "CheckpointFormat", "ScaledResNet", "SplitBatchNorm2d", "backbone_state",
    "backbone_tensors", "build_resnet", "detect_format", "export_backbone", "feature_dim", "load_backbone",
    "mlp_head", "norm_layer", "parse_arch", "random_backbone",
]
