"""The HTML report: one page assembled from sections, each drawn from CSVs under results/.

A section is a function ``(ReportContext) -> Section | None``; it returns None when its inputs
are absent (a stage that is switched off). Every number shown names the CSV it comes from.
"""

from .page import ReportContext, Section, build_report  # noqa: F401
