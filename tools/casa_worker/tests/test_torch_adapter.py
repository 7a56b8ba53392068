"""The `torch` adapter rebuilds a bundle of either format version (tools/casa_model/rebuild.py,
the one rebuild of the project): version 2 (batch axis: casa-tiny, dev-casa) and version 1
(the legacy dev bundle, the insertion twins), each reproducing its bundle's parity fixtures."""
import json
import os
import shutil

import pytest

from tools.casa_worker.adapters.torch_bundle import TorchBundleAdapter
from tools.casa_worker.protocol import WorkerError

from .conftest import ROOT

BUNDLES = os.path.join(ROOT, "test", "fixtures", "bundles")


@pytest.mark.parametrize("bundle, version", [
    (os.path.join(BUNDLES, "dev-casa"), 2),
    (os.path.join(BUNDLES, "legacy", "dev-casa-v1"), 1),
    (os.path.join(BUNDLES, "dev-insertion"), 1),
])
def test_bundles_of_both_format_versions_rebuild_within_their_fixtures(bundle, version):
    with open(os.path.join(bundle, "casa.json")) as f:
        assert json.load(f)["formatVersion"] == version
    with open(os.path.join(bundle, "fixtures", "session.json")) as f:
        tolerance = json.load(f).get("tolerance", 1e-4)
    adapter = TorchBundleAdapter(bundle, "cpu", lambda line: None)
    assert adapter.fixture_diff is not None and adapter.fixture_diff <= tolerance


def test_a_bundle_whose_graphs_do_not_match_is_one_sentence(tmp_path):
    """A decoder graph of another model (the insertion twin's in a CASA bundle) cannot be
    rebuilt: the rebuild's BundleError reaches casa-live as bad_model, naming the file."""
    src = os.path.join(BUNDLES, "dev-casa")
    for name in os.listdir(src):
        if name.endswith((".json", ".onnx")):
            shutil.copy(os.path.join(src, name), tmp_path / name)
    shutil.copy(os.path.join(BUNDLES, "dev-insertion", "decoder.onnx"), tmp_path / "decoder.onnx")
    with pytest.raises(WorkerError) as err:
        TorchBundleAdapter(str(tmp_path), "cpu", lambda line: None)
    assert err.value.code == "bad_model"
    assert f"{tmp_path}/decoder.onnx: the graph's initialisers do not match" in err.value.message
