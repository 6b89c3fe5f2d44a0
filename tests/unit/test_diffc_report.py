"""The DiffC report section: curves and table from a rate-distortion CSV; absent input, no section."""

import pandas as pd

from sdsqueeze.report.diffc import diffc_section, rd_summary
from sdsqueeze.report.page import ReportContext

UNAVAILABLE = "unavailable: URLError: no network"


def rd_frame() -> pd.DataFrame:
    rows = []
    for image, offset in (("astronaut", 0.0), ("coffee", 1.0)):
        rows.append({"model": "tiny", "image": image, "method": "vae", "recon_timestep": 0, "psnr": 30 + offset,
                     "ssim": 0.9, "lpips": UNAVAILABLE, "latent_snr_db": float("inf")})
        for t, bpp in ((500, 0.3), (300, 0.5), (100, 0.7)):
            rows.append({"model": "tiny", "image": image, "method": "diffc", "recon_timestep": t,
                         "bytes": bpp * 16384 / 8, "bpp": bpp, "psnr": 20 + 10 * bpp + offset, "ssim": bpp,
                         "lpips": UNAVAILABLE, "latent_snr_db": -10 / bpp, "decode_seconds": 1.0,
                         "encode_seconds_all_rate_points": 3.0, "redecode_identical": t == 100 or None,
                         "chunk_kl_excess_bits": -0.5 - offset})
    return pd.DataFrame(rows)


def test_section_draws_curves_and_states_lpips_reason(tmp_path):
    csv = tmp_path / "rd.csv"
    rd_frame().to_csv(csv, index=False)
    ctx = ReportContext(inputs={"diffc": [str(csv)]}, config={}, out_dir=tmp_path)
    section = diffc_section(ctx)
    assert section is not None and (tmp_path / "figures" / "diffc_rd.png").stat().st_size > 0
    assert "VAE round trip" in section.body_html and UNAVAILABLE in section.body_html
    assert "2 of 2 files" in section.body_html
    summary = rd_summary(rd_frame())
    assert list(summary.point) == ["t=500", "t=300", "t=100", "VAE round trip"]
    assert summary.set_index("point").loc["t=100", "psnr"] == 27.5
    assert summary.set_index("point").loc["t=100", "worst_chunk_excess_bits"] == -0.5
    assert "Worst chunk KL over budget" in section.body_html  # shown under its human header


def test_no_input_no_section(tmp_path):
    assert diffc_section(ReportContext(inputs={"diffc": []}, config={}, out_dir=tmp_path)) is None
