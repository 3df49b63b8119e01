"""Security operations: detections, compliance metrics, Prometheus metrics, an HTML dashboard.

The questions live in the database (revision 0030): one invoker-rights function per question in
schema ``auth`` -- ``auth.brute_force()``, ``auth.credential_stuffing()``,
``auth.session_anomalies()``, ``auth.login_metrics()``... -- with its thresholds as parameters,
and for each an ``auth.report_<name>()`` that returns aggregates only, for a *report role*
(``auth.grant_report_role``). This package reads the ``report_*`` functions:

::

    from authmodels import report

    result = report.collect(engine)                  # one read-only snapshot
    print(report.render_text(result))                # the table of ``authmodels report``
    result.findings                                  # what to look at, with severities
    Path("dashboard.html").write_text(report.render_html(result))

======================  ==============================================================
module                  what it holds
======================  ==============================================================
``thresholds``          :class:`Thresholds`: the queries' windows and thresholds
``queries``             one reader per ``auth.report_*`` function; :func:`collect`
``data``                :class:`SecurityReport` and its records
``findings``            :class:`Targets`, the severities, :func:`evaluate`
``text``, ``html``      :func:`render_text`, :func:`render_html` (inline SVG from ``svg``)
``metrics``             the Prometheus collector (the ``metrics`` extra)
``cli``                 ``authmodels report`` and ``authmodels metrics``
======================  ==============================================================
"""

from __future__ import annotations

from authmodels.report.data import ComplianceMetric, Finding, SecurityReport
from authmodels.report.findings import SEVERITY_ORDER, Targets, at_least, worst
from authmodels.report.html import render_html
from authmodels.report.queries import collect, report_transaction
from authmodels.report.text import render_text
from authmodels.report.thresholds import Thresholds

__all__ = [
    "SEVERITY_ORDER",
    "ComplianceMetric",
    "Finding",
    "SecurityReport",
    "Targets",
    "Thresholds",
    "at_least",
    "collect",
    "render_html",
    "render_text",
    "report_transaction",
    "worst",
]
