"""Tuning: searching schedules with MetaSchedule and keeping the records builds use.

``job.py`` runs a job (``tune``), ``spaces.py`` defines what is searched, ``search.py`` searches,
``verdict.py`` decides, ``measure.py`` builds and times (locally or over RPC), ``records.py``
is the one store and lookup of records, and ``intrinsics.py`` imports what MetaSchedule needs
first in seconds instead of a minute.
"""

from .job import TuneJob, tune
from .measure import RpcConfig
from .search import Progress
from .verdict import TuneResult

__all__ = ["Progress", "RpcConfig", "TuneJob", "TuneResult", "tune"]
