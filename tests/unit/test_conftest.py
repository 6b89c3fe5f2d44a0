"""The shared test set-up: marking by directory and the `.test/` configs."""

import pytest
from conftest import REPO, pytest_collection_modifyitems


class FakeItem:
    def __init__(self, path):
        self.fspath, self.markers = path, []

    def add_marker(self, marker):
        self.markers.append(marker.name)


def test_tests_under_workflow_are_marked_slow():
    items = [FakeItem(REPO / "tests" / "workflow" / "test_e2e.py"), FakeItem(REPO / "tests" / "unit" / "test_io.py"),
             FakeItem(REPO / "tests" / "test_workflow_names.py")]
    pytest_collection_modifyitems(items)
    assert [item.markers for item in items] == [["slow"], [], []]


@pytest.mark.parametrize("name", ["smallest", "unfitted", "cluster"])
def test_every_test_config_is_valid(test_config, name, monkeypatch):
    from sdsqueeze import config as sq_config

    monkeypatch.chdir(REPO)  # captions are relative to the workflow
    config = sq_config.validate(test_config(name))
    assert config["model"]["source"] == "tiny" and config["reference"] in config["variants"]
