"""jetwork projections: views of the event log kept in KV, and the reader for them.

``Projector`` keeps the views current, ``Views`` reads them, ``rebuild`` makes them again from
the log. ``workflow_view`` is the pure function both the projector and the client use.
"""

from projections.projector import Projector, ProjectorSettings
from projections.reader import RunningJobInfo, Views, WorkerInfo
from projections.rebuild import RebuildStats, rebuild
from projections.views import JobView, WorkflowSummary, WorkflowView, summary, workflow_view

__all__ = [
    "JobView",
    "Projector",
    "ProjectorSettings",
    "RebuildStats",
    "RunningJobInfo",
    "Views",
    "WorkerInfo",
    "WorkflowSummary",
    "WorkflowView",
    "rebuild",
    "summary",
    "workflow_view",
]
