"""Shared pytest setup: the tests' helpers import from this folder, and no user state leaks in."""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config):
    """Builds consult tuning records: point them at an empty directory, not the user's records."""
    os.environ["DWC_RECORDS"] = tempfile.mkdtemp(prefix="dwc-test-records-")
