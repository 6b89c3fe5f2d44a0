"""Entry point of rule fetch_coco_captions: download COCO's annotation archive, keep one file."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import urllib.request
import zipfile
from pathlib import Path
from tempfile import TemporaryDirectory

from sdsqueeze import io, smk


def main(snakemake):
    target = Path(snakemake.output[0])
    with TemporaryDirectory() as tmp:
        archive = Path(tmp) / "annotations.zip"
        try:
            urllib.request.urlretrieve(snakemake.params.url, archive)
        except OSError as err:
            raise RuntimeError(
                f"could not download {snakemake.params.url} ({err}); download it where the network "
                f"allows and place annotations/{target.name} at {target}"
            ) from None
        with zipfile.ZipFile(archive) as zf, io.atomic_path(target) as out:
            out.write_bytes(zf.read(f"annotations/{target.name}"))


smk.run(snakemake, main)  # noqa: F821
