"""Backbone registry, split BN, checkpoint formats (import), export, and safe loading."""
import pickle
import random

import pytest
import timm
import torch
import torchvision
from safetensors.torch import load_file, save_file
from torch import nn

from fastinv.errors import DataError, UsageError
from fastinv.models import ARCHS, FORMATS, SplitBatchNorm2d, build_resnet, detect_format, export_backbone, \
    feature_dim, load_backbone, mlp_head, parse_arch, random_backbone

TINY = "resnet10x0.25"
FEATURES = {"resnet10": 512, "resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


@pytest.mark.parametrize("name", ARCHS.names())
def test_every_registered_arch_outputs_its_feature_width(name):
    model = build_resnet(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, FEATURES[name]) == (2, feature_dim(model))


@pytest.mark.parametrize("name,width", [("resnet18x2", 1024), ("resnet10x0.25", 128), ("resnet50x0.5", 1024)])
def test_width_multiplier_scales_every_stage(name, width):
    model = build_resnet(name)
    assert feature_dim(model) == width
    assert model.conv1.out_channels == int(64 * parse_arch(name)[1])
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, width)


def test_resnet50x3_parses_as_three_times_wider():
    spec, width = parse_arch("resnet50x3")
    assert width == 3.0 and spec.layers == (3, 4, 6, 3)


@pytest.mark.parametrize("bad", ["vgg16", "resnet18x0.3", "resnet", "resnet50x"])
def test_unknown_or_bad_arch_lists_valid_names(bad):
    with pytest.raises(UsageError, match="resnet18"):
        build_resnet(bad)


def test_width_one_is_torchvision_bit_for_bit():
    torch.manual_seed(0)
    ours = build_resnet("resnet18").state_dict()
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18().state_dict()
    assert set(theirs) - set(ours) == {"fc.weight", "fc.bias"}
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_split_bn_normalises_each_sub_batch_like_batchnorm():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5) * 3 + 1
    split = SplitBatchNorm2d(3, num_splits=4)
    plain = nn.BatchNorm2d(3)
    out = split(x)
    for chunk, expected in zip(x.chunk(4), out.chunk(4)):
        plain.reset_running_stats()
        torch.testing.assert_close(plain(chunk), expected)
    means = torch.stack([0.1 * c.mean(dim=(0, 2, 3)) for c in x.chunk(4)]).mean(0)
    torch.testing.assert_close(split.running_mean, means)
    split.eval()
    plain.load_state_dict(split.state_dict())
    torch.testing.assert_close(split(x), plain.eval()(x))
    cl = x.contiguous(memory_format=torch.channels_last)
    assert split.train()(cl).is_contiguous(memory_format=torch.channels_last)


def _split_and_plain_per_sub_batch(x: torch.Tensor, splits: int) -> tuple:
    """Split BN on x, and plain BatchNorm2d on each sub-batch from the same parameters: outputs, input
    gradients, parameter gradients and running statistics of both, under one output gradient."""
    torch.manual_seed(1)
    split = SplitBatchNorm2d(x.shape[1], num_splits=splits)
    with torch.no_grad():
        split.weight.uniform_(0.5, 2.0)
        split.bias.normal_()
    plain = [nn.BatchNorm2d(x.shape[1]) for _ in range(splits)]
    for bn in plain:
        bn.load_state_dict(split.state_dict())
    xs, xp = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = split(xs)
    expected = torch.cat([bn(chunk) for bn, chunk in zip(plain, xp.chunk(splits))])
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(x.dtype)
    out.backward(grad)
    expected.backward(grad)
    running = [torch.stack([getattr(bn, k) for bn in plain]).mean(0) for k in ("running_mean", "running_var")]
    return (out, xs.grad, split.weight.grad, split.bias.grad, split.running_mean, split.running_var), \
        (expected, xp.grad, sum(bn.weight.grad for bn in plain), sum(bn.bias.grad for bn in plain), *running)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_split_bn_is_batchnorm_per_sub_batch_forward_and_backward(memory_format, dtype):
    # bfloat16 input with float32 parameters is what split BN sees under autocast
    x = (torch.randn(12, 5, 6, 7, generator=torch.Generator().manual_seed(0)) * 3 + 1).to(dtype)
    got, expected = _split_and_plain_per_sub_batch(x.contiguous(memory_format=memory_format), splits=3)
    names = ("output", "input gradient", "weight gradient", "bias gradient", "running mean", "running var")
    for name, a, b in zip(names, got, expected):
        torch.testing.assert_close(a, b, msg=name)
    assert got[0].dtype == dtype and got[1].dtype == dtype
    assert got[0].is_contiguous(memory_format=memory_format) and got[1].is_contiguous(memory_format=memory_format)


def test_split_bn_copies_nothing_in_the_forward_pass():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    split = SplitBatchNorm2d(4, num_splits=2)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(8, 4, 5, 5).contiguous(memory_format=memory_format).requires_grad_()
        with Ops() as ops:
            split(x)
        copies = {"clone", "copy_", "cat", "stack", "_to_copy", "repeat", "contiguous"} & set(ops.names)
        assert not copies and "native_batch_norm" in ops.names, ops.names


def test_split_bn_refuses_a_batch_not_divisible_by_splits():
    with pytest.raises(ValueError, match="multiple"):
        SplitBatchNorm2d(3, num_splits=4)(torch.randn(6, 3, 2, 2))
    with pytest.raises(ValueError, match="one value per channel"):  # BatchNorm2d's own rule, per sub-batch
        SplitBatchNorm2d(3, num_splits=4)(torch.randn(4, 3, 1, 1))


def test_mlp_head_uses_moco_key_names():
    head = mlp_head(512, 512, 128)
    assert [k for k in head.state_dict()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert mlp_head(512, 0, 128)(torch.randn(2, 512)).shape == (2, 128)


def _encoder_state(seed: int) -> dict[str, torch.Tensor]:
    model = random_backbone(TINY, seed)
    model.fc = mlp_head(feature_dim(model), 32, 16)
    return model.state_dict()


def _layout(name: str, encoder: dict[str, torch.Tensor]) -> dict:
    fmt = FORMATS.get(name)
    state = {f"{fmt.prefix}{k}": v for k, v in encoder.items()}
    state[f"{fmt.prefix}fc.9.weight"] = torch.zeros(1000, 8)  # a classifier: dropped
    if fmt.prefix:
        state["queue"] = torch.zeros(16, 64)  # outside the backbone prefix: ignored
    return {fmt.container: state, "epoch": 3} if fmt.container else state


@pytest.mark.parametrize("name", FORMATS.names())
def test_every_checkpoint_format_loads_into_a_plain_backbone(name, tmp_path):
    encoder = _encoder_state(seed=5)
    checkpoint = _layout(name, encoder)
    assert detect_format(checkpoint) == name
    torch.save(checkpoint, tmp_path / "ckpt.pth")
    model = load_backbone(tmp_path / "ckpt.pth", TINY)
    loaded = model.state_dict()
    assert set(loaded) == {k for k in encoder if not k.startswith("fc.")}
    assert all(torch.equal(loaded[k], encoder[k]) for k in loaded)
    assert not model.training and isinstance(model.fc, nn.Identity)


def test_moco_reference_checkpoint_with_queue_and_key_encoder(tmp_path):
    encoder = _encoder_state(seed=1)
    state = {f"module.encoder_q.{k}": v for k, v in encoder.items()}
    state.update({f"module.encoder_k.{k}": v + 1 for k, v in encoder.items() if v.is_floating_point()})
    state.update({"module.queue": torch.randn(16, 64), "module.queue_ptr": torch.zeros(1, dtype=torch.long)})
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": {}}, tmp_path / "moco.pth.tar")
    model = load_backbone(tmp_path / "moco.pth.tar", TINY)
    assert torch.equal(model.conv1.weight, encoder["conv1.weight"])


def test_torchvision_and_timm_weights(tmp_path):
    torch.manual_seed(3)
    tv = torchvision.models.resnet18()
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    assert torch.equal(load_backbone(tmp_path / "tv.pth", "resnet18").layer4[1].conv2.weight, tv.layer4[1].conv2.weight)
    tm = timm.create_model("resnet18", pretrained=False)
    save_file(tm.state_dict(), str(tmp_path / "timm.safetensors"))
    assert torch.equal(load_backbone(tmp_path / "timm.safetensors", "resnet18").bn1.running_var, tm.bn1.running_var)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_export_is_a_torchvision_state_dict_and_round_trips(suffix, tmp_path):
    model = random_backbone("resnet18", seed=2).to(memory_format=torch.channels_last)
    path = export_backbone(model, tmp_path / f"backbone{suffix}")
    tv = torchvision.models.resnet18()
    state = torch.load(path, weights_only=True) if suffix == ".pth" else load_file(path)
    result = tv.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    again = load_backbone(path, "resnet18")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def test_export_refuses_unknown_suffix(tmp_path):
    with pytest.raises(UsageError, match="safetensors"):
        export_backbone(random_backbone(TINY), tmp_path / "x.bin")


def test_random_spec_is_seeded():
    a, b, c = (load_backbone("random", TINY, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.conv1.weight, b.conv1.weight) and not torch.equal(a.conv1.weight, c.conv1.weight)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_random_bytes_are_a_one_line_data_error(tmp_path):
    # Garbage fails anywhere inside torch's weights-only unpickler (an unseeded os.urandom once drew
    # bytes that raised IndexError there), so try many seeded draws behind pickle and zip headers.
    path = tmp_path / "noise.pth"
    for seed in range(200):
        rng = random.Random(seed)
        header = rng.choice([b"", b"\x80\x02", b"\x80\x04", b"PK\x03\x04"])
        path.write_bytes(header + rng.randbytes(rng.choice([1, 16, 300, 4096])))
        with pytest.raises(DataError, match="noise.pth") as info:
            load_backbone(path)
        assert "\n" not in str(info.value)
    (tmp_path / "noise.safetensors").write_bytes(random.Random(0).randbytes(64))
    with pytest.raises(DataError, match="safetensors"):
        load_backbone(tmp_path / "noise.safetensors")


class _Payload:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_and_never_runs(writer, tmp_path):
    victim = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": _Payload(str(victim))}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    assert not victim.exists()
    with pytest.raises(DataError, match="weights_only"):
        load_backbone(path)
    assert not victim.exists()


def test_wrong_architecture_names_the_mismatched_keys(tmp_path):
    torch.save(random_backbone("resnet18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(DataError, match=r"shape mismatches \(bn1.bias \(64,\) vs \(16,\).*unexpected keys \(layer1.1") as info:
        load_backbone(tmp_path / "r18.pth", TINY)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="missing keys.*layer1.2"):
        load_backbone(tmp_path / "r18.pth", "resnet34")


def test_state_without_a_backbone_is_a_data_error(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(DataError, match="no known checkpoint layout.*weights"):
        load_backbone(tmp_path / "other.pth")


def test_feature_dim_of_a_generic_module():
    module = nn.Sequential(nn.Conv2d(3, 7, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert feature_dim(module) == 7
