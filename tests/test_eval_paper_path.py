"""`fastinv eval --reference DIR` against an independent per-image rebuild of the paper's
eval_synthetic_invariance.py: PIL images at native resolution, torchvision.transforms.functional
at the magnitudes results.json records, Resize 256 + CenterCrop 224, a torchvision ResNet-18, and
the whitened cosine of (mu - x) @ cholesky(S^-1) as the paper's script computes it."""
import json
import subprocess
import sys
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms.functional as FT
from PIL import Image
from sklearn.covariance import ledoit_wolf
from torchvision import transforms

MEAN_STD = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def _photos(folder: Path) -> list[Path]:
    source = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    cuts = {"landscape.jpg": source.crop((0, 100, 512, 484)).resize((500, 375)),
            "portrait.jpg": source.crop((50, 0, 450, 533)).resize((375, 500)),
            "large.png": source.resize((800, 600))}
    folder.mkdir()
    for name, image in cuts.items():
        image.save(folder / name, **({"quality": 92} if name.endswith(".jpg") else {}))
    return sorted(folder.iterdir())


def _paper_view(name: str, image: Image.Image, m) -> Image.Image:
    """The paper's ManualTransform.T for one magnitude, without its stray 1-degree shear."""
    if name == "resized_crop":
        return FT.resized_crop(image, *m, size=[224, 224])
    ops = {"h_flip": lambda: FT.hflip(image) if m else image, "v_flip": lambda: FT.vflip(image) if m else image,
           "scale": lambda: FT.affine(image, angle=0.0, translate=[0, 0], scale=m, shear=[0.0, 0.0]),
           "shear": lambda: FT.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=list(m)),
           "rotation": lambda: FT.rotate(image, m),
           "translation": lambda: FT.affine(image, angle=0.0, translate=list(m), scale=1.0, shear=[0.0, 0.0]),
           "grayscale": lambda: FT.rgb_to_grayscale(image, 3) if m else image,
           "brightness": lambda: FT.adjust_brightness(image, m), "contrast": lambda: FT.adjust_contrast(image, m),
           "saturation": lambda: FT.adjust_saturation(image, m), "hue": lambda: FT.adjust_hue(image, m),
           "blur": lambda: FT.gaussian_blur(image, [23, 23], [m, m]), "sharpness": lambda: FT.adjust_sharpness(image, m),
           "equalize": lambda: FT.equalize(image) if m else image, "posterize": lambda: FT.posterize(image, m),
           "invert": lambda: FT.invert(image) if m else image}
    return FT.center_crop(FT.resize(ops[name](), 256), 224)


@pytest.mark.slow
def test_synthetic_scores_match_a_per_image_rebuild_of_the_paper_script(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos")
    torch.manual_seed(3)
    net = torchvision.models.resnet18()
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "fastinv", "eval", "--suite", "synthetic", "--reference",
                             str(tmp_path / "photos"), "--synthetic-images", "3", "--model", f"m={tmp_path / 'r18.pth'}",
                             "--arch", "resnet18", "--grid-size", "2", "--out", str(out), "--cache-dir",
                             str(tmp_path / "cache"), "--no-progress"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "results.json").read_text())
    ours = next(t for t in doc["tables"] if t["key"] == "synthetic_cosine")["rows"]["m"]
    meta = doc["meta"]
    assert sorted(meta["synthetic_images"]) == [str(p) for p in paths]
    assert meta["reference"]["images"] == 3 and meta["reference"]["models"]["m"]["estimator"] == "ledoit-wolf"

    net.fc = torch.nn.Identity()
    net.eval()
    clean_tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                   transforms.Normalize(*MEAN_STD)])
    images = [Image.open(p).convert("RGB") for p in paths]
    with torch.no_grad():
        clean = torch.stack([net(clean_tf(image)[None])[0] for image in images]).double()
    mu = clean.mean(0)
    cholesky = torch.linalg.cholesky(torch.from_numpy(np.linalg.inv(ledoit_wolf(clean.numpy())[0])))
    for name, grid in meta["synthetic_grid"].items():
        if name == "deform":  # random draws: checked by its displacement statistics elsewhere
            continue
        similarity = []
        with torch.no_grad():
            for image, feature in zip(images, clean):
                a = (mu - feature) @ cholesky
                for m in grid["magnitudes"]:
                    view = FT.normalize(FT.pil_to_tensor(_paper_view(name, image, tuple(m) if isinstance(m, list) else m))
                                        .float() / 255, *MEAN_STD)
                    b = (mu - net(view[None])[0].double()) @ cholesky
                    similarity.append(float(torch.nn.functional.cosine_similarity(a, b, dim=0)))
        assert abs(ours[name] - float(np.mean(similarity))) < 0.01, name
