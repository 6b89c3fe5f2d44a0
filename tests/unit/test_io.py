"""Atomic writers: outputs get the permissions a plain open() would give, figures appear whole."""

import os
import stat
from pathlib import Path

import pytest

from sdsqueeze import io

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_file_gets_the_umask_mode_of_a_plain_open(tmp_path, umask_022):
    io.write_text(tmp_path / "out.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    assert mode(tmp_path / "out.txt") == mode(tmp_path / "plain.txt") == 0o644


def test_atomic_dir_gets_the_umask_mode_of_a_plain_mkdir(tmp_path, umask_022):
    with io.atomic_dir(tmp_path / "shard") as tmp:
        (tmp / "a.png").write_bytes(b"x")
    assert mode(tmp_path / "shard") == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard"]


def test_group_writable_umask_is_respected(tmp_path):
    previous = os.umask(0o002)
    try:
        io.write_text(tmp_path / "out.txt", "x")
        with io.atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(previous)
    assert (mode(tmp_path / "out.txt"), mode(tmp_path / "d")) == (0o664, 0o775)


def test_failed_figure_leaves_no_file(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    target = tmp_path / "fig.png"
    with pytest.raises(TypeError):
        io.save_figure(fig, target, dpi="not a number")
    assert list(tmp_path.iterdir()) == []
    io.save_figure(fig, target, dpi=50)
    plt.close(fig)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_report_figures_go_through_the_atomic_writer():
    """The README says every output is written under a temporary name and renamed."""
    direct = [f"{p.relative_to(REPO)}:{i}" for p in (REPO / "src" / "sdsqueeze").rglob("*.py")
              for i, line in enumerate(p.read_text().splitlines(), 1)
              if ".savefig(" in line and p.name != "io.py" and "savefig(tmp" not in line]
    assert direct == []
