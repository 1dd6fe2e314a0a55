"""Shared pytest setup: the tests' helpers import from this folder, and no user state leaks in."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


# Files whose tests run whole tuning jobs (a minute or more each): scheduled first, so that under
# pytest-xdist they run beside the many short tests instead of ending the run alone. xdist's
# default scheduling hands them all to one worker in its first batch (that worker then ran them
# in a row at the end of a 29-minute run); `--dist worksteal` (the README's command) lets the
# idle worker take half of them.
SLOW_FILES = ("test_tune.py",)


def pytest_configure(config):
    """Every temporary file of the run, the tests' and their subprocesses' (tuning jobs, TVM's
    builders, a job killed on purpose), goes into one directory that the run removes; builds
    consult an empty records directory inside it, not the user's records."""
    config.dwc_temp_dir = tempfile.mkdtemp(prefix="dwc-test-run-")
    os.environ["TMPDIR"] = config.dwc_temp_dir  # inherited by xdist workers and subprocesses
    tempfile.tempdir = None  # re-read TMPDIR in this process
    os.environ["DWC_RECORDS"] = os.path.join(config.dwc_temp_dir, "records")


def pytest_unconfigure(config):
    """Remove the run's temporary directory (each xdist worker removes its own, inside the
    controller's)."""
    shutil.rmtree(getattr(config, "dwc_temp_dir", ""), ignore_errors=True)


def pytest_collection_modifyitems(session, config, items):
    """The slow files' tests first, the rest in their order."""
    items.sort(key=lambda item: Path(str(item.fspath)).name not in SLOW_FILES)
