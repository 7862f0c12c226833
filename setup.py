"""Install fastinv: the library, the `fastinv` command and its device sub-packages.

`pipelines/` and `kernels/` live at the top level of the repository but install as
`fastinv.pipelines` and `fastinv.kernels`, so nothing generic lands in site-packages.
"""
from setuptools import find_packages, setup

_MAPPED = {"fastinv.pipelines": "pipelines", "fastinv.kernels": "kernels"}


def _packages() -> list[str]:
    names = [p for p in find_packages(include=["fastinv", "fastinv.*"])]
    for package, folder in _MAPPED.items():
        names.append(package)
        names.extend(f"{package}.{sub}" for sub in find_packages(where=folder))
    return names


def _package_dir() -> dict[str, str]:
    mapping = dict(_MAPPED)
    for package, folder in _MAPPED.items():
        for sub in find_packages(where=folder):
            mapping[f"{package}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    return mapping


# faiss publishes its GPU wheel (`faiss-gpu`) for the CUDA 12 runtime only; it brings that runtime
# with it and runs beside CUDA 13 libraries under any driver that supports CUDA 13.
_FAISS_GPU = "faiss-gpu>=1.15"

setup(
    name="fastinv",
    version="0.1.0",
    description="Pre-train MoCo-v2 under chosen augmentation recipes and measure the invariances "
    "and transfer they produce, on the device.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=_packages(),
    package_dir=_package_dir(),
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "numpy>=1.24",
        "scipy>=1.11",
        "pillow>=10",
        "tqdm>=4.66",
        "pyyaml>=6",
        "matplotlib>=3.7",
        "safetensors>=0.4",
        "tensorboard>=2.14",
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "scikit-learn>=1.4", "scipy>=1.11", "faiss-cpu>=1.8", "timm>=1.0"],
        "dali": ["nvidia-dali-cuda130>=1.40"],
        "dali-cuda12": ["nvidia-dali-cuda120>=1.40"],
        "ffcv": ["ffcv==1.0.2", "numba>=0.58"],
        "gpu": ["cupy-cuda13x>=14", "cuml-cu13", _FAISS_GPU],
        "gpu-cuda12": ["cupy-cuda12x>=14", "cuml-cu12", _FAISS_GPU],
        "timm": ["timm>=1.0"],
    },
    entry_points={"console_scripts": ["fastinv=fastinv.cli:main"]},
)
