"""The HTML report: one page assembled (report/build.py) from an ordered list of sections, each
drawn from CSVs under results/. Conclusions (cost ranking, verdicts, Pareto fronts, trade-offs)
live in report/analysis.py; page.py holds the building blocks and imports no section.
"""

from .build import SECTIONS, build_report  # noqa: F401
from .page import ReportContext, Section  # noqa: F401
