"""Tracking calls found in Python, JavaScript and TypeScript source; what `lint_sources` reports.

The fixture apps say on each line what is expected there: `expect:` with no plan, `plan:` what the
ecommerce plan adds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.plans.jssource import scan_script, tokenize
from cairn.plans.lint import lint_sources
from cairn.plans.plan import plan_from_json
from cairn.plans.pysource import scan_python
from cairn.plans.sources import source_files

FIXTURES = Path(__file__).parent / "fixtures"
APPS = ["app.py", "app.js", "app.ts"]
_MARK = re.compile(r"(?:#|//) (?:expect:(?P<expect>[^:]*?))?\s*(?:plan:(?P<plan>.*))?$")


def _expected(path: Path, with_plan: bool) -> dict[int, set[str]]:
    expected: dict[int, set[str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if "expect:" not in line and "plan:" not in line:
            continue
        mark = _MARK.search(line)
        assert mark is not None, line
        rules = set((mark["expect"] or "").split())
        if with_plan:
            rules |= set((mark["plan"] or "").split())
        if rules:
            expected[number] = rules
    return expected


def _found(path: Path, with_plan: bool) -> dict[int, set[str]]:
    plan = plan_from_json({"name": "shop", "include": ["ecommerce"]}) if with_plan else None
    found: dict[int, set[str]] = {}
    for finding in lint_sources(path, plan):
        found.setdefault(finding.line, set()).add(finding.rule)
    return found


@pytest.mark.parametrize("with_plan", [False, True], ids=["naming", "ecommerce-plan"])
@pytest.mark.parametrize("app", APPS)
def test_fixture_apps_report_exactly_what_their_comments_expect(app: str, with_plan: bool) -> None:
    path = FIXTURES / app
    assert _found(path, with_plan) == _expected(path, with_plan)


def test_findings_point_at_the_name_or_key() -> None:
    findings = lint_sources(FIXTURES / "app.py", None)
    by_rule = {(f.line, f.rule): f for f in findings}
    line = next(
        n
        for n, text in enumerate((FIXTURES / "app.py").read_text().splitlines(), 1)
        if '"order_completed"' in text
    )
    name = by_rule[(line, "event-name-format")]
    source_line = (FIXTURES / "app.py").read_text().splitlines()[line - 1]
    assert source_line[name.column - 1 :].startswith('"order_completed"')
    assert name.suggestion == "Order Completed"
    assert name.file.endswith("app.py")


def test_python_arguments_follow_analytics_python() -> None:
    calls = scan_python(
        "import analytics\n"
        "analytics.track('u1', 'Order Completed', {'order_id': 'o1'})\n"
        "analytics.track('Order Completed', {'total': 1})\n"
        "analytics.identify('u1', {'email': 'a@b.c'})\n"
        "analytics.group('u1', 'g1', {'name': 'Acme'})\n"
        "analytics.page('u1', 'Docs', 'Install', {'path': '/'})\n"
        "analytics.screen(user_id='u1', name='Home', properties={'size': -3})\n"
    )
    assert [(c.kind, c.event, c.payload) for c in calls] == [
        ("track", "Order Completed", {"order_id": "o1"}),
        ("track", "Order Completed", {"total": 1}),
        ("identify", None, {"email": "a@b.c"}),
        ("group", None, {"name": "Acme"}),
        ("page", None, {"path": "/"}),
        ("screen", None, {"size": -3}),
    ]


def test_python_columns_count_characters_not_bytes() -> None:
    (call,) = scan_python("import analytics\nx = 'é'; analytics.track('u', 'Order Completed')\n")
    assert call.event_position == (2, 31)


def test_python_calls_on_unrelated_objects_are_ignored() -> None:
    text = "import re\nm = re.match('a', 'a')\nm.group(1)\ntracker.track('x')\ntrack('x')\n"
    assert scan_python(text) == []


def test_bare_track_with_event_keyword_counts() -> None:
    (call,) = scan_python("track(user_id='u', event='Order Completed', properties=p)\n")
    assert call.event == "Order Completed"
    assert not call.complete


def test_javascript_forms() -> None:
    calls = scan_script(
        "analytics.track('Order Completed', {order_id: 'o1', 'total': 2, nested: {a: [1, true, null]}})\n"
        "analytics.identify('u1', {email: 'a@b.c'}, {user_hash: 'h'})\n"
        "analytics.identify({plan: 'pro'})\n"
        "analytics.group('acct', {name: 'Acme'})\n"
        "analytics.page('Docs', {path: '/docs'})\n"
        "rudderanalytics.track({userId: 'u', event: 'Signed In', properties: {username: 'ada'}})\n"
    )
    assert [(c.kind, c.event, c.payload) for c in calls] == [
        (
            "track",
            "Order Completed",
            {"order_id": "o1", "total": 2, "nested": {"a": [1, True, None]}},
        ),
        ("identify", None, {"email": "a@b.c"}),
        ("identify", None, {"plan": "pro"}),
        ("group", None, {"name": "Acme"}),
        ("page", None, {"path": "/docs"}),
        ("track", "Signed In", {"username": "ada"}),
    ]


def test_javascript_spreads_and_variables_make_a_call_incomplete() -> None:
    spread, variable, shorthand = scan_script(
        "analytics.track('A Done', {...base, b: 1})\n"
        "analytics.track('A Done', props)\n"
        "analytics.track('A Done', {total})\n"
    )
    assert not spread.complete
    assert spread.payload == {"b": 1}
    assert not variable.complete
    assert variable.payload is None
    assert shorthand.complete
    assert shorthand.payload is not None
    assert "total" in shorthand.payload


def test_tokenizer_strings_templates_regexes_and_comments() -> None:
    tokens = tokenize(
        "a = 'it\\'s' + \"q\\u0041\" // c\n"
        "b = `x ${ {k: `in ${1}`} } y` / 2 /* long\ncomment */ c = /re[/]x/gi;\n"
    )
    kinds = [(t.kind, t.text) for t in tokens]
    assert ("string", "it's") in kinds
    assert ("string", "qA") in kinds
    template = next(t for t in tokens if t.kind == "template")
    assert template.dynamic
    assert template.line == 2
    assert ("regex", "/re[/]x/gi") in kinds
    assert next(t for t in tokens if t.text == "c").line == 3


def test_jsx_text_with_apostrophes_does_not_swallow_code() -> None:
    calls = scan_script(
        "const p = <p>Don't stop</p>;\n"
        "const q = <b>it's</b>;\n"
        "analytics.track('Order Completed', {order_id: 'o1'});\n"
    )
    assert [c.event for c in calls] == ["Order Completed"]
    assert calls[0].position == (3, 11)


def test_broken_script_does_not_crash() -> None:
    for text in ("analytics.track(", "analytics.track('A Done', {a: ", "analytics.track({", "}{)("):
        scan_script(text)


def test_source_files_skip_dependencies(tmp_path: Path) -> None:
    (tmp_path / "node_modules" / "x").mkdir(parents=True)
    (tmp_path / "node_modules" / "x" / "index.js").write_text("analytics.track('bad_name')")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "a.py").write_text("")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "app.ts").write_text("")
    (tmp_path / "web" / "bundle.min.js").write_text("")
    (tmp_path / "main.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    found = [p.relative_to(tmp_path).as_posix() for p in source_files(tmp_path)]
    assert found == ["main.py", "web/app.ts"]


def test_unparseable_python_is_reported_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("def broken(:\n")
    (tmp_path / "good.py").write_text("import analytics\nanalytics.track('u', 'bad_name')\n")
    findings = lint_sources(tmp_path, None)
    assert [(Path(f.file).name, f.rule, f.severity) for f in findings] == [
        ("bad.py", "source-unreadable", "warning"),
        ("good.py", "event-name-format", "error"),
        ("good.py", "event-name-past-tense", "error"),
    ]


@given(st.text(alphabet="analytics.track('A Done', {x: [1, `${y}`]}) /*/\n\"'`\\", max_size=80))
def test_the_tokenizer_and_reader_survive_any_text(text: str) -> None:
    tokenize(text)
    scan_script(text)
