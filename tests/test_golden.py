"""Every TensorFlow golden case (tests/data/golden, computed by TF 2.21) through dwc's API."""

import pytest

from helpers import check_golden, golden_case, golden_count


def test_golden_file_has_the_seed_examples():
    """The first three cases are the TF documentation's examples (VALID, explicit, 3x3 image)."""
    assert golden_count() == 75
    assert golden_case(0)["padding"] == "VALID"
    assert golden_case(1)["padding"] == [[0, 0], [1, 0], [1, 0], [0, 0]]
    assert golden_case(2)["input"].shape == (1, 3, 3, 1)


@pytest.mark.parametrize("index", range(golden_count()))
def test_golden_case_on_host(index):
    """dwc on this machine's CPU reproduces TF's output within the dtype's tolerance."""
    check_golden(index, "host")
