"""``flywheel ui``: a read-only web dashboard over a project home.

Pages: runs (live), a run's DAG, a node with its log, an artifact with its
lineage graph, models (registry versions, blessing, evaluation per slice,
curves, comparison), monitoring (drift, predictions, live performance,
alerts, rollbacks), schedules, and Kubeflow runs through the KFP API
(``--kfp-host``). Everything it serves comes from this
package (no CDN); charts and graphs are server-rendered SVG.
"""

from flywheel.dashboard.server import DashboardServer, make_server
from flywheel.dashboard.sources import Sources

__all__ = ["DashboardServer", "Sources", "make_server"]
