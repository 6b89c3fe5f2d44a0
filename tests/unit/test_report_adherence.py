"""The report's prompt adherence: its own section with intervals and verdicts, a column of the
technique table, and one line at the top when the prompts state no attributes."""

import re

import pytest
from report_fixtures import default_config, write_report_inputs

from sdsqueeze.report import build_report, sections
from sdsqueeze.report.sections import adherence_section

# The sections adherence appears in (the figures of the others are tested in test_report.py).
SECTIONS = [sections.variants_section, sections.quality_section, sections.adherence_section]


def build(root, adherence):
    config = default_config()
    inputs = write_report_inputs(root / "in", config, adherence=adherence)
    out = root / "out" / "index.html"
    build_report(inputs, config, out, section_makers=SECTIONS)
    return out.read_text(), config


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    return build(tmp_path_factory.mktemp("measured"), adherence=True)


def section(text, title):
    start = text.index(f">{title}</h2>")
    end = text.find("<h2", start + 1)
    return text[start:end if end > 0 else len(text)]


def test_adherence_section_shows_accuracy_with_intervals_and_verdicts(measured):
    text, config = measured
    body = section(text, "Prompt adherence")
    reference = config["reference"]
    row = re.search(rf"<td>{reference} \(reference\)</td>.*?</tr>", body, re.S).group(0)
    assert row.count("100% [100%, 100%]") == 5  # overall and four attributes
    nocal = re.search(r"<td>w4a8-nocal</td>.*?</tr>", body, re.S).group(0)
    assert "0% [0%, 0%]" in nocal  # colour
    assert "— worse; worse in colour" in nocal
    same = re.search(r"<td>fp32-sdpa</td>.*?</tr>", body, re.S).group(0)
    assert "+0 [+0, +0] — equivalent" in same
    assert "±5 points" in body and "docs/shapes.md" in body


def test_glance_box_names_the_reference_adherence_and_the_variants_worse_in_it(measured):
    text, _ = measured
    glance = text[text.index("At a glance"):text.index("</ul>", text.index("At a glance"))]
    assert "Prompt adherence of the reference (share of images showing every stated attribute): " \
           "100% [100%, 100%]; worse than the reference: " in glance
    assert "<b>w4a8-nocal</b> (-100 points)" in glance


def test_technique_table_and_verdicts_include_adherence(measured):
    text, _ = measured
    techniques = section(text, "Techniques")
    assert "<th>Prompt adherence [95% CI]</th>" in techniques
    nocal = re.search(r"<td>w4a8-nocal</td>.*?</tr>", techniques, re.S).group(0)
    assert re.search(r"worse: [^<]*Prompt adherence", nocal)
    assert "adherence_" not in text and "nan" not in text.lower().replace("nanoseconds", "")


def test_prompts_outside_the_domain_give_one_line_and_no_section(tmp_path):
    text, _ = build(tmp_path, adherence=False)
    assert text.count("prompt states no attributes") == 1
    assert "Prompt adherence: unavailable here — prompt states no attributes." in text
    assert ">Prompt adherence</h2>" not in text and "<th>Prompt adherence" not in text


def test_no_summary_no_section():
    from sdsqueeze.report.page import ReportContext

    assert adherence_section(ReportContext(inputs={}, config=default_config(), out_dir=None)) is None
