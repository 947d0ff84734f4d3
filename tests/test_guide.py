"""The guided path against the app's own files: every step's page exists, its view sets every
widget of that page that outlives a page switch, and the numbering, links and minutes hold.

The pages are read as source (`ast`), not run: the keys are the ones the page files pass to
Streamlit. `tests/app/test_pages.py` then opens each step's view and finds what it promises.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from elastic import guide

ROOT = Path(__file__).resolve().parents[1]


def _calls(page: str) -> list[ast.Call]:
    tree = ast.parse((ROOT / page).read_text())
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def bound_keys(page: str) -> set[str]:
    """Keys of the page's widgets bound to the URL (`bind="query-params"`)."""
    return {
        _keyword(call, "key")
        for call in _calls(page)
        if _keyword(call, "bind") == "query-params" and _keyword(call, "key")
    }


def persisted_keys(page: str) -> set[str]:
    """Keys of the page's widgets whose value outlives a page switch without the URL:
    `persist_state=...`, passed directly or in a `**` mapping (the Train form's `**KEEP`)."""
    return {
        _keyword(call, "key")
        for call in _calls(page)
        if _keyword(call, "key")
        and any(k.arg == "persist_state" or k.arg is None for k in call.keywords)
    }


def state_keys(page: str) -> set[str]:
    """Every session-state key the page names: widget keys, `st.session_state[...]`,
    `st.session_state.get/pop(...)` and `... in st.session_state`."""
    tree = ast.parse((ROOT / page).read_text())
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if _keyword(node, "key"):
                keys.add(_keyword(node, "key"))
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "session_state"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                keys.add(node.args[0].value)
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "session_state"
            and isinstance(node.slice, ast.Constant)
        ):
            keys.add(node.slice.value)
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Constant)
            and any(
                isinstance(c, ast.Attribute) and c.attr == "session_state" for c in node.comparators
            )
        ):
            keys.add(node.left.value)
    return keys


def navigation_titles() -> dict[str, str]:
    """page file -> title, as `app.py` registers them with `st.Page`."""
    return {
        call.args[0].value: _keyword(call, "title")
        for call in _calls("app.py")
        if isinstance(call.func, ast.Attribute) and call.func.attr == "Page"
    }


NUMBERS = range(1, len(guide.STEPS) + 1)


def test_the_path_is_a_one_hour_workshop_of_numbered_steps():
    assert guide.total_minutes() == 60
    assert [guide.step(n) for n in NUMBERS] == list(guide.STEPS)
    assert len({s.title for s in guide.STEPS}) == len(guide.STEPS)
    for s in guide.STEPS:
        assert len(s.title) <= 20, s.title  # a card shows it on one line
        assert s.question.endswith("?") and s.look and s.minutes > 0


def test_the_path_visits_every_page_and_the_experiment():
    pages = {s.page for s in guide.STEPS}
    assert pages == set(navigation_titles()) - {guide.HOME}
    experiments = [s for s in guide.STEPS if s.params.get("experiment") == "Another user's experts"]
    assert len(experiments) == 1  # the intervention step, beside the picture step of that page


@pytest.mark.parametrize("number", NUMBERS)
def test_each_step_opens_a_page_of_the_app_under_its_own_title(number):
    s = guide.step(number)
    assert (ROOT / s.page).is_file()
    assert navigation_titles()[s.page] == s.page_title
    assert s.url_path == Path(s.page).stem


@pytest.mark.parametrize("number", NUMBERS)
def test_each_view_sets_every_widget_of_its_page_that_outlives_a_page_switch(number):
    s = guide.step(number)
    bound = bound_keys(s.page)
    assert set(s.params) <= bound, "a preset that is no URL-bound widget of the page"
    assert bound | persisted_keys(s.page) <= set(s.state_keys), "a widget the step leaves as is"
    assert set(s.reset) <= state_keys(s.page), "a reset key the page never uses"
    assert len(set(s.state_keys)) == len(s.state_keys)
    assert guide.STEP_PARAM not in state_keys(s.page)  # `step` is the path's, not a widget's


def test_the_lab_steps_set_the_lesson_values_and_leave_the_rest_at_the_defaults():
    first, crossover = (s for s in guide.STEPS if s.url_path == "complexity_lab")
    assert first.params["N"] == "1024" and first.params["k"] == "8"
    assert crossover.params["N"] == "4096" and crossover.params["k"] == "32"
    assert {k: v for k, v in crossover.params.items() if k not in ("N", "k")} == {
        k: v for k, v in first.params.items() if k not in ("N", "k")
    }


def test_the_bound_keys_are_read_from_the_page_files():
    # the reader itself: a page with known widgets
    lab = {"mode", "N", "k", "K", "d", "layers", "batch"}
    assert bound_keys("app_pages/complexity_lab.py") == lab
    assert bound_keys("app_pages/recommend.py") == set()
    assert {"tf_users", "tf_seq_len"} <= persisted_keys("app_pages/train.py")
    assert "train_source" not in persisted_keys("app_pages/train.py")
    assert {"slot", "slot_user"} <= state_keys("app_pages/interest_memory.py")
    assert "lab_mode" in state_keys("app_pages/complexity_lab.py")  # st.session_state.get(...)


@pytest.mark.parametrize(
    ("value", "number"),
    [("1", 1), (" 3 ", 3), ("7", 7), ("0", None), ("8", None), ("-1", None), ("x", None),
     ("", None), (None, None)],
)  # fmt: skip
def test_a_step_number_is_read_from_the_url(value, number):
    assert guide.step_number(value) == number


def test_a_steps_link_carries_its_number_and_its_view():
    for n in NUMBERS:
        assert guide.query(n) == {"step": str(n), **guide.step(n).params}
    with pytest.raises(ValueError, match="steps 1 to 7"):
        guide.step(0)
    with pytest.raises(ValueError):
        guide.query(len(guide.STEPS) + 1)
    with pytest.raises(TypeError):
        guide.step(1).params["N"] = "1"  # a preset cannot be changed by whoever reads it


def test_next_and_previous_walk_the_path_once_each_way():
    forward, n = [], 1
    while n is not None:
        forward.append(n)
        n = guide.next_step(n)
    backward, n = [], len(guide.STEPS)
    while n is not None:
        backward.append(n)
        n = guide.previous_step(n)
    assert forward == list(NUMBERS) == backward[::-1]
    with pytest.raises(ValueError):
        guide.next_step(0)


def test_the_workshop_plan_in_the_docs_follows_the_path():
    plan = (ROOT / "docs" / "app.md").read_text().split("## The guided path")[1].split("\n## ")[0]
    plan = " ".join(plan.split())  # the plan is wrapped at 100 columns
    start = 0
    for number, step in enumerate(guide.STEPS, start=1):
        heading = f"**0:{start:02d} — {number} · {step.title}** ({step.page_title}"
        assert heading in plan, heading
        assert f"{step.minutes} min). *{step.question}*" in plan, step.question
        start += step.minutes
