"""Streamlit glue of the guided path (`elastic.guide` holds the path itself): the links that
open a step, and the banner a step's page shows on top.

`app.py` calls `step_banner` before it runs the page, so no page file needs to know about the
path, and a step's view is set before the page creates its first widget.
"""

from __future__ import annotations

import streamlit as st

from elastic import guide

# session-state key: the step whose view this session last opened (None: not on the path)
OPENED = "guide_opened"


def step_link(number: int, label: str, icon: str | None = None, **link) -> None:
    """A link that opens step `number` in its view."""
    target = guide.step(number)
    st.page_link(target.page, label=label, icon=icon, query_params=guide.query(number), **link)


def step_banner(url_path: str) -> None:
    """When the URL names a step of this page (`?step=3`): open its view once, then show its
    question, what to look for, and the way on. Otherwise nothing.

    Opening the view drops the session state of every widget the step sets or starts over
    (`Step.state_keys`), so the URL the link carried seeds them afresh. Without this, a widget
    bound to the URL kept the value an earlier visit left (Streamlit carries a bound widget's
    value across page switches) whenever the step's value was the widget's default, which
    Streamlit leaves out of the URL: the lab stayed at N = 4,096 after a lesson had set it.
    The view is opened once per arrival, so moving a slider within the step is kept."""
    number = guide.step_number(st.query_params.get(guide.STEP_PARAM))
    if number is None or guide.step(number).url_path != url_path:
        st.session_state.pop(OPENED, None)  # left the path: the next arrival opens afresh
        return
    step = guide.step(number)
    if st.session_state.get(OPENED) != number:
        for key in step.state_keys:
            st.session_state.pop(key, None)
        st.session_state[OPENED] = number

    with st.container(border=True):
        st.markdown(f"**Step {number} of {len(guide.STEPS)} · {step.question}**")
        st.markdown(f"*What you should see:* {step.look}")
        home, previous, onward = st.columns(3)
        with home:
            st.page_link(guide.HOME, label="Back to the path", icon=":material/list:")
        before = guide.previous_step(number)
        if before is not None:
            with previous:
                step_link(
                    before,
                    f"Previous: {before} · {guide.step(before).title}",
                    icon=":material/arrow_back:",
                )
        after = guide.next_step(number)
        with onward:
            if after is None:
                st.caption(
                    f"The last step: {guide.total_minutes()} minutes. Every step stays one "
                    "link away on Home."
                )
            else:
                step_link(
                    after,
                    f"**Next: {after} · {guide.step(after).title}**",
                    icon=":material/arrow_forward:",
                    icon_position="right",
                )
