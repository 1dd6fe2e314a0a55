"""Shared pytest setup: the tests' helpers import from this folder, and no user state leaks in."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


# Files whose tests run whole tuning jobs (a minute or more each): scheduled first, so that under
# pytest-xdist they run beside the many short tests instead of ending the run alone.
SLOW_FILES = ("test_tune.py",)


def pytest_configure(config):
    """Builds consult tuning records: point them at an empty directory, not the user's records."""
    config.dwc_records_dir = tempfile.mkdtemp(prefix="dwc-test-records-")
    os.environ["DWC_RECORDS"] = config.dwc_records_dir


def pytest_unconfigure(config):
    """Remove the records directory made for this run (each xdist worker made its own)."""
    shutil.rmtree(getattr(config, "dwc_records_dir", ""), ignore_errors=True)


def pytest_collection_modifyitems(session, config, items):
    """The slow files' tests first, the rest in their order."""
    items.sort(key=lambda item: Path(str(item.fspath)).name not in SLOW_FILES)
