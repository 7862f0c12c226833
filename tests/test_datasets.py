"""Dataset readers on tiny fake copies written in each dataset's real on-disk layout."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from fastinv.datasets import DATASETS, ImageSet, find_datasets, read_dataset
from fastinv.datasets.downstream import read_caltech101, read_pts
from fastinv.datasets.registry import KINDS, METRICS
from fastinv.errors import DataError, UsageError
from fastinv.pipelines.decode import decode_image

WORLD_SETS = [name for name, spec in DATASETS if spec.folder == "world"]


def _image(path: Path, size: tuple[int, int] = (12, 10), value: int = 0) -> Path:
    """Write a real image file (format from the suffix) of `size` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.random.default_rng(value).integers(0, 256, (size[1], size[0], 3))).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    return path


def _groups(images: ImageSet) -> dict[str, list[str]]:
    return {images.group_names[g]: sorted(p.name for p, h in zip(images.paths, images.groups) if h == g) for g in set(images.groups.tolist())}


def test_coil100_groups_by_object(tmp_path: Path) -> None:
    for n in (1, 2):
        for angle in (0, 5, 10):
            _image(tmp_path / "coil-100" / f"obj{n}__{angle}.png")
    _image(tmp_path / "coil-100" / "obj3__0.png")
    images = read_dataset("coil100", tmp_path)
    assert _groups(images) == {"obj001": ["obj1__0.png", "obj1__10.png", "obj1__5.png"], "obj002": ["obj2__0.png", "obj2__10.png", "obj2__5.png"]}
    assert images.image(0).shape == (3, 10, 12)


def test_aloi_modes(tmp_path: Path) -> None:
    for obj in ("1", "2"):
        for k in range(3):
            _image(tmp_path / "ALOI" / "viewpoint" / obj / f"{obj}_r{k * 5}.png")
        for light in (1, 2):
            for cam in (1, 2):
                _image(tmp_path / "ALOI" / "illumination" / obj / f"{obj}_l{light}c{cam}.png")
    assert len(set(read_dataset("aloi_viewpoint", tmp_path).groups)) == 2
    assert _groups(read_dataset("aloi_illumination", tmp_path))["1/c2"] == ["1_l1c2.png", "1_l2c2.png"]
    with pytest.raises(DataError, match=r"temperature.*expected layout"):
        read_dataset("aloi_temperature", tmp_path)


def _alot_material(root: Path, m: str) -> None:
    """One ALOT material under its real file names: 4 cameras x lights 1-5, 8 at rotation 0 (no r) and
    r60/r120/r180, and each camera's reddish image."""
    for cam in range(1, 5):
        for light in (1, 2, 3, 4, 5, 8):
            for rot in ("", "r60", "r120", "r180"):
                _image(root / "ALOT" / m / f"{m}_c{cam}l{light}{rot}.png", (4, 4))
        _image(root / "ALOT" / m / f"{m}_c{cam}i.png", (4, 4))


def test_alot_groups_on_the_real_file_names(tmp_path: Path) -> None:
    for m in ("1", "2"):
        _alot_material(tmp_path, m)
    viewpoint = _groups(read_dataset("alot_viewpoint", tmp_path))
    assert len(viewpoint) == 2 * 6 and {len(v) for v in viewpoint.values()} == {16}  # 250 x 6 = 1,500 on the full set
    assert viewpoint["2/l8"] == sorted(f"2_c{c}l8{r}.png" for c in range(1, 5) for r in ("", "r60", "r120", "r180"))
    illumination = _groups(read_dataset("alot_illumination", tmp_path))
    assert len(illumination) == 2 * 4 * 4 and {len(v) for v in illumination.values()} == {6}  # 4,000 on the full set
    assert illumination["1/c3/r0"] == sorted(f"1_c3l{light}.png" for light in (1, 2, 3, 4, 5, 8))
    assert illumination["1/c3/r120"] == sorted(f"1_c3l{light}r120.png" for light in (1, 2, 3, 4, 5, 8))
    temperature = _groups(read_dataset("alot_temperature", tmp_path))
    assert len(temperature) == 2 * 4 and temperature["2/c4"] == ["2_c4i.png", "2_c4l8.png"]  # 1,000 on the full set
    assert "every pair counts once" in DATASETS.get("alot_viewpoint").note


def test_exposure_flickr_realblur_pairs(tmp_path: Path) -> None:
    _image(tmp_path / "ExposureErrors" / "GT_IMAGES" / "a0001-IMG_1.jpg")
    for ev in ("N1.5", "P1"):
        _image(tmp_path / "ExposureErrors" / "INPUT_IMAGES" / f"a0001-IMG_1_{ev}.JPG")
    assert _groups(read_dataset("exposure_errors", tmp_path)) == {"a0001": ["a0001-IMG_1.jpg", "a0001-IMG_1_N1.5.JPG", "a0001-IMG_1_P1.JPG"]}
    for name in ("0001", "0002"):
        _image(tmp_path / "Flickr1024" / "Train" / f"{name}_L.png")
        _image(tmp_path / "Flickr1024" / "Train" / f"{name}_R.png")
    _image(tmp_path / "Flickr1024" / "Train" / "0003_L.png")
    assert len(read_dataset("flickr1024", tmp_path)) == 4
    for k in range(2):
        _image(tmp_path / "RealBlur-J" / "scene1" / "gt" / f"gt_{k}.png")
        _image(tmp_path / "RealBlur-J" / "scene1" / "blur" / f"blur_{k}.png")
    assert _groups(read_dataset("realblur_j", tmp_path))["scene1/00001"] == ["blur_1.png", "gt_1.png"]
    _image(tmp_path / "RealBlur-J" / "scene1" / "blur" / "blur_2.png")
    with pytest.raises(DataError, match="2 gt but 3 blur"):
        read_dataset("realblur_j", tmp_path)


def test_world_groups_and_tasks(tiny_world: Path, tmp_path: Path) -> None:
    root = tmp_path
    (root / "world").symlink_to(tiny_world)
    pose = read_dataset("world_pose", root)
    assert len(pose) == 12 and len(set(pose.groups)) == 3
    latents = read_dataset("world_latents", root)
    assert latents.train.targets.shape == (7 * 12, 8) and latents.test.targets.shape == (7 * 6, 8)
    first = latents.train.paths[0]
    assert np.array_equal(latents.train.targets[0], np.load(first.parent.parent / f"latents_{first.parent.name}.npy")[0])
    shapes = read_dataset("world_shapes", root)
    assert shapes.task == "classification" and np.bincount(shapes.train.targets).tolist() == [12] * 7
    assert read_dataset("world_colour_regression", root).train.target_names == ("object_hue", "background_hue", "light_hue")


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_declares_its_kind_and_metric(name: str) -> None:
    spec = DATASETS.get(name)
    assert spec.name == name and spec.kind in KINDS[spec.suite]
    assert (spec.metric is None) == (spec.suite == "realworld") and spec.metric in (None, *METRICS)
    with pytest.raises(ValueError, match="kind"):
        type(spec)(spec.name, spec.suite, spec.folder, spec.layout, spec.read, "texture", spec.metric)


@pytest.mark.parametrize("name", WORLD_SETS)
def test_world_sets_read_as_their_declaration_says(name: str, tiny_world: Path) -> None:
    spec = DATASETS.get(name)
    read = spec.read(tiny_world)
    if spec.suite == "realworld":
        assert isinstance(read, ImageSet) and read.groups is not None
    else:
        assert (read.task == "regression") == (spec.metric == "r2")


def test_images_decode_as_training_decodes(tmp_path: Path) -> None:
    good = _image(tmp_path / "a.jpg", (17, 11), value=4)
    flat = _image(tmp_path / "b.png", (9, 5), value=5)
    bad = tmp_path / "c.jpg"
    bad.write_bytes(good.read_bytes()[:200])
    images = ImageSet("files", paths=(good, flat, bad))
    assert torch.equal(images.image(0), decode_image(good)) and images.image(0).shape == (3, 11, 17)
    assert torch.equal(images.image(1), decode_image(flat)) and images.image(1).dtype == torch.uint8
    with pytest.raises(DataError, match=str(bad)):
        images.image(2)


def test_causal3dident_validates_rows_against_files(tmp_path: Path) -> None:
    for split, n in (("trainset", 3), ("testset", 2)):
        for cls in ("0", "1"):
            for k in range(n):
                _image(tmp_path / "Causal3DIdent" / split / cls / f"{k:06d}.png")
            (tmp_path / "Causal3DIdent" / split / cls / "readme.txt").write_text("not an image")
            np.save(tmp_path / "Causal3DIdent" / split / f"latents_{cls}.npy", np.arange(n * 10, dtype=np.float32).reshape(n, 10) + int(cls))
    data = read_dataset("causal3dident", tmp_path)
    assert data.train.targets.shape == (6, 10) and data.train.targets[3, 0] == 1.0
    assert data.train.target_names[:3] == ("pos_x", "pos_y", "pos_z")
    np.save(tmp_path / "Causal3DIdent" / "testset" / "latents_1.npy", np.zeros((5, 10), dtype=np.float32))
    with pytest.raises(DataError, match=r"shape \(5, 10\) for 2 images"):
        read_dataset("causal3dident", tmp_path)


def test_cifar10_pickle_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 9]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    data = read_dataset("cifar10", tmp_path)
    assert len(data.train) == 20 and len(data.test) == 4 and data.train.classes[9] == "c9"
    raw = pickle.loads((folder / "test_batch").read_bytes())[b"data"][1]
    assert np.array_equal(data.test.image(1).numpy(), raw.reshape(3, 32, 32))


def test_caltech101_keeps_background_class(tmp_path: Path) -> None:
    for cls in ("BACKGROUND_Google", "accordion", "airplanes"):
        for k in range(5):
            _image(tmp_path / "caltech101" / "101_ObjectCategories" / cls / f"image_{k:04d}.jpg")
    with pytest.raises(DataError, match="too few images"):
        read_dataset("caltech101", tmp_path)
    data = read_caltech101(tmp_path / "caltech101", per_class_train=2)
    assert data.train.classes == ("BACKGROUND_Google", "accordion", "airplanes")
    assert np.bincount(data.train.targets).tolist() == [2, 2, 2] and len(data.test) == 9
    assert not set(data.train.paths) & set(data.test.paths)


def test_flowers102_mat_files(tmp_path: Path) -> None:
    root = tmp_path / "flowers-102"
    for i in range(1, 7):
        _image(root / "jpg" / f"image_{i:05d}.jpg")
    savemat(root / "imagelabels.mat", {"labels": np.array([[1, 1, 2, 2, 102, 102]])})
    savemat(root / "setid.mat", {"trnid": np.array([[1, 3]]), "valid": np.array([[5]]), "tstid": np.array([[2, 4, 6]])})
    data = read_dataset("flowers102", tmp_path)
    assert data.train.targets.tolist() == [0, 1] and data.val.targets.tolist() == [101] and data.test.targets.tolist() == [0, 1, 101]


def _write_pts(path: Path, points: np.ndarray) -> None:
    lines = ["version: 1", f"n_points:  {len(points)}", "{"] + [f"{x:.3f} {y:.3f}" for x, y in points] + ["}"]
    path.write_text("\n".join(lines) + "\n")


def test_300w_square_box_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for k in range(10):
        sub = "01_Indoor" if k < 5 else "02_Outdoor"
        image = _image(tmp_path / "300W" / sub / f"img_{k:03d}.png", (60, 50))
        _write_pts(image.with_suffix(".pts"), rng.uniform([10, 5], [40, 45], (68, 2)))
    data = read_dataset("300w", tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (3, 3, 4)
    assert data.train.targets.shape == (3, 136) and data.train.target_names[:2] == ("x0", "y0")
    box, target = data.test.boxes[0], data.test.targets[0].reshape(68, 2)
    assert box[2] - box[0] == pytest.approx(box[3] - box[1])
    assert target.min() == pytest.approx(0, abs=1e-3) and target.max() == pytest.approx(224, abs=1e-3)
    points = read_pts(data.test.paths[0].with_suffix(".pts"))
    assert np.allclose(points, box[:2] + target / 224 * (box[2] - box[0]), atol=1e-3)


def test_celeba_landmarks_in_centre_square(tmp_path: Path) -> None:
    root = tmp_path / "celeba"
    names = [f"{k:06d}.jpg" for k in range(1, 4)]
    for k, name in enumerate(names):
        _image(root / "img_align_celeba" / name, (178, 218), k)
    rows = [f"{n} 69 129 106 113 77 142 73 152 108 154" for n in names]
    (root / "list_landmarks_align_celeba.txt").write_text("3\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n")
    data = read_dataset("celeba", tmp_path)
    assert data.train.boxes[0].tolist() == [0.0, 20.0, 178.0, 198.0]
    assert data.test.targets[0][:2] == pytest.approx([69 * 224 / 178, (129 - 20) * 224 / 178])
    assert len(data.val) == 1


def test_lsp_joints_mat(tmp_path: Path) -> None:
    root = tmp_path / "lsp"
    joints = np.zeros((3, 14, 5))
    joints[0], joints[1], joints[2] = 30.0, 20.0, 1.0
    for k in range(5):
        _image(root / "images" / f"im{k + 1:04d}.jpg", (60, 40))
    savemat(root / "joints.mat", {"joints": joints})
    data = read_dataset("lsp", tmp_path)
    assert (len(data.train), len(data.test)) == (3, 2) and data.train.targets.shape == (3, 28)
    assert data.train.boxes[0].tolist() == [10.0, 0.0, 50.0, 40.0]
    assert data.train.targets[0][:2] == pytest.approx([20 * 224 / 40, 20 * 224 / 40])


def test_find_datasets_reports_present_and_skipped(tmp_path: Path) -> None:
    for n in (1, 2):
        _image(tmp_path / "coil-100" / f"obj{n}__0.png")
        _image(tmp_path / "coil-100" / f"obj{n}__5.png")
    (tmp_path / "lsp").mkdir()
    present, skipped = find_datasets(tmp_path, validate=True)
    assert list(present) == ["coil100"]
    assert "joints.mat is missing" in skipped["lsp"] and "expected layout" in skipped["lsp"]
    assert set(present) | set(skipped) == set(DATASETS.names())
    assert list(find_datasets(tmp_path, "downstream")[0]) == ["lsp"]
    with pytest.raises(DataError, match="not a folder"):
        find_datasets(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="unknown dataset 'imagenet'; valid: coil100"):
        read_dataset("imagenet", tmp_path)


def test_missing_dataset_names_its_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"coil100: .* is not a folder; expected layout: root/obj\{N\}__\{angle\}.png"):
        read_dataset("coil100", tmp_path)
