"""Where the metrics' pretrained weights come from, in a fixed order, and why they are missing.

Order: (1) the config's ``metrics.weights_dir`` (a folder a researcher or a cluster fills once),
(2) the library's usual cache (torch hub's ``checkpoints/`` folder, the Hugging Face hub cache),
(3) a download into that cache when ``metrics.download`` allows it and the network answers.
When none works, ``WeightsUnavailable`` carries every place tried; the metric's rows then say
``unavailable: <reason>`` instead of a number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
DOWNLOAD_TIMEOUT_S = 30


class WeightsUnavailable(RuntimeError):
    """No usable weights file; the message lists where we looked and why each failed."""


@dataclass(frozen=True)
class WeightsFile:
    """A single checkpoint file a metric needs: its canonical name and its official URL."""

    filename: str
    url: str


# The files the libraries themselves download (same names, so an existing cache is reused).
FID_INCEPTION = WeightsFile(
    "pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
)
ALEXNET = WeightsFile(
    "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
)


def torch_hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_file(weights: WeightsFile, weights_dir: str | Path | None, download: bool) -> Path:
    """The local path of ``weights``: weights_dir, then torch hub's cache, then a download."""
    tried = []
    if weights_dir:
        candidate = Path(weights_dir) / weights.filename
        if candidate.is_file():
            return candidate
        tried.append(f"not in weights_dir {weights_dir}")
    else:
        tried.append("metrics.weights_dir not set")
    cached = torch_hub_checkpoints() / weights.filename
    if cached.is_file():
        return cached
    tried.append(f"not in torch hub cache {cached.parent}")
    if not download:
        tried.append("download disabled (metrics.download: false)")
    else:
        import socket

        import torch

        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a firewalled cluster node must not hang the job
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, str(cached), progress=False)
            return cached
        except Exception as err:  # noqa: BLE001 - any network failure means "not available"
            tried.append(f"download failed ({type(err).__name__}: {err})")
        finally:
            socket.setdefaulttimeout(previous)
    raise WeightsUnavailable(f"{weights.filename}: " + "; ".join(tried))


def unreachable(url: str, timeout: float = 5) -> str | None:
    """Why ``url``'s host cannot be reached (None when it can): one quick TCP connection, so an
    offline machine does not sit through the hub client's retries with back-off (~45 s)."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout).close()
        return None
    except OSError as err:
        return f"{parsed.hostname} unreachable: {err}"


def resolve_hf_file(repo_id: str, filenames: tuple[str, ...], local_names: tuple[Path, ...],
                    download: bool) -> Path:
    """The first of ``local_names`` that exists, else a file of ``repo_id`` from the HF cache,
    else downloaded from the hub when allowed."""
    from huggingface_hub import constants, hf_hub_download

    for path in local_names:
        if path.is_file():
            return path
    tried = ["not in weights_dir (" + ", ".join(str(p) for p in local_names) + ")"
             if local_names else "metrics.weights_dir not set"]
    for filename in filenames:
        try:
            return Path(hf_hub_download(repo_id, filename, local_files_only=True))
        except Exception:  # noqa: BLE001 - a cache miss
            pass
    tried.append(f"not in HF cache {constants.HF_HUB_CACHE} for {repo_id}")
    if not download:
        tried.append("download disabled (metrics.download: false)")
    elif constants.HF_HUB_OFFLINE:
        tried.append("download impossible: HF_HUB_OFFLINE is set")
    elif (reason := unreachable(constants.ENDPOINT)) is not None:
        tried.append(f"download impossible ({reason})")
    else:
        errors = []
        for filename in filenames:
            try:
                return Path(hf_hub_download(repo_id, filename))
            except Exception as err:  # noqa: BLE001 - missing file or network failure
                errors.append(f"{filename}: {type(err).__name__}: {(str(err).splitlines() or [''])[0][:160]}")
        tried.append("download failed (" + "; ".join(errors) + ")")
    raise WeightsUnavailable("; ".join(tried))
