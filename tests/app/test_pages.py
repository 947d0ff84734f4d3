"""Every page through `streamlit.testing.v1.AppTest`: it runs without an exception, shows its
main elements, and a widget change changes what is drawn."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

import numpy as np
import pytest

from elastic import guide
from elastic.viz.interventions import EXPERIMENTS
from tests.app.conftest import end_training, figure_titled, figures, no_exception, open_page

HOME = "app_pages/home.py"
DISPATCHER = "app_pages/dispatcher_attention.py"
MEMORY = "app_pages/interest_memory.py"
RECOMMEND = "app_pages/recommend.py"
LAB = "app_pages/complexity_lab.py"
TRAIN = "app_pages/train.py"


def test_home_opens_on_the_guided_path_and_explains_below_it():
    at = open_page()
    no_exception(at)
    assert "ELASTIC" in at.title[0].value
    assert at.subheader[0].value == "A guided path"  # the first section: the workshop starts here
    links = {link.proto.label: link.proto for link in at.get("page_link")}
    for number, step in enumerate(guide.STEPS, start=1):
        link = links[f"**{number} · {step.title}**"]  # numbered, a short title on the link
        assert link.page == step.url_path
        assert parse_qs(link.query_string) == {k: [v] for k, v in guide.query(number).items()}
        assert any(step.question in c.value for c in at.caption)  # the full question below it
    assert len(at.get("image")) == 1  # the architecture picture, under the path
    assert figures(at), "the demo's training curves"
    assert any("Loaded:" in m.value and "ELASTIC" in m.value for m in at.markdown)
    assert not any(m.value.startswith("**Step ") for m in at.markdown)  # no step banner on Home


def _widget(at, key: str):
    for kind in ("selectbox", "radio", "select_slider", "button_group", "number_input"):
        for widget in at.get(kind):
            if widget.key == key:
                return widget
    raise AssertionError(f"no widget with key {key!r}")


def _shown(widget) -> str:
    """A widget's value as it is written in the URL: its formatted option."""
    if hasattr(widget, "index"):
        return widget.options[widget.index]
    if hasattr(widget, "indices"):
        return widget.options[widget.indices[0]]
    return str(widget.value)


def _page_text(at) -> str:
    """Every text a participant can read on the page, in one string."""
    kinds = ("title", "subheader", "markdown", "caption")
    texts = [e.value for kind in kinds for e in at.get(kind)]
    texts += [m.label for m in at.metric]
    texts += [b.label for b in at.button]
    texts += [w.label for kind in ("selectbox", "radio", "select_slider", "button_group",
                                   "number_input", "slider") for w in at.get(kind)]  # fmt: skip
    texts += [str(c) for d in at.dataframe for c in d.value.columns]
    for fig in figures(at):
        layout = fig.get("layout", {})
        texts.append(layout.get("title", {}).get("text") or "")
        texts += [a.get("text", "") for a in layout.get("annotations", [])]
    return "\n".join(texts)


def _banner(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**Step ")]


@pytest.mark.parametrize("number", range(1, len(guide.STEPS) + 1))
def test_each_step_opens_its_view_with_its_question_and_the_next_step(number):
    step = guide.step(number)
    at = open_page(step.page, guide.query(number))
    no_exception(at)
    assert _banner(at) == [f"**Step {number} of {len(guide.STEPS)} · {step.question}**"]
    assert any(m.value == f"*What you should see:* {step.look}" for m in at.markdown)
    for key, value in step.params.items():  # the view the step describes
        assert _shown(_widget(at, key)) == value, key
    text = _page_text(at)
    for landmark in step.landmarks:  # what `look` points at is on the page
        assert landmark in text, landmark
    links = {link.proto.label: link.proto for link in at.get("page_link")}
    assert links["Back to the path"].page == ""  # Home, the default page
    after = guide.next_step(number)
    if after is None:
        assert not any(label.startswith("**Next:") for label in links)
        assert any("The last step" in c.value for c in at.caption)
    else:
        onward = links[f"**Next: {after} · {guide.step(after).title}**"]
        assert onward.page == guide.step(after).url_path
        assert parse_qs(onward.query_string) == {k: [v] for k, v in guide.query(after).items()}
    before = guide.previous_step(number)
    back = [label for label in links if label.startswith("Previous:")]
    assert back == ([] if before is None else [f"Previous: {before} · {guide.step(before).title}"])


def _lab_steps() -> tuple[int, int]:
    first, crossover = (n for n, s in enumerate(guide.STEPS, 1) if s.url_path == "complexity_lab")
    return first, crossover


def test_a_step_opens_its_own_view_whatever_an_earlier_step_left():
    """Lesson 4 (N = 4,096), then Home, then lesson 1 used to open the lab at N = 4,096: a
    widget bound to the URL keeps its value across page switches, and the first lesson's
    N = 1,024 is the slider's default, which Streamlit leaves out of the URL."""
    first, crossover = _lab_steps()
    at = open_page(LAB, guide.query(crossover))
    assert (at.select_slider(key="N").value, at.select_slider(key="k").value) == (4096, 32)
    at.query_params.clear()  # "Back to the path"
    at.switch_page(HOME).run()
    at.query_params.update(guide.query(first))  # the first step's card
    at.switch_page(LAB).run()
    no_exception(at)
    assert (at.select_slider(key="N").value, at.select_slider(key="k").value) == (1024, 8)
    assert _banner(at)[0].startswith(f"**Step {first} of")

    at.select_slider(key="N").set_value(4096).run()  # moving a slider within the step is kept
    no_exception(at)
    assert at.select_slider(key="N").value == 4096
    assert at.query_params.get("step") == str(first) and _banner(at)


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _crossover(at, label: str) -> float | None:
    """The N of an 'ELASTIC cheaper in ...' metric; None when it says there is none."""
    value = _metric(at, label)
    return float(value.removeprefix("N ≈ ").replace(",", "")) if value.startswith("N ≈") else None


def test_the_lab_steps_say_what_the_lab_shows():
    """The two lessons' "what you should see", checked on the page itself."""
    first, crossover = _lab_steps()
    at = open_page(LAB, guide.query(first))
    ratio = float(_metric(at, "Materialized ÷ ELASTIC memory").rstrip("×"))
    flops = float(_metric(at, "SASRec ÷ ELASTIC FLOPs at this N").rstrip("×"))
    at.select_slider(key="N").set_value(4096).run()  # "from 1,024 to 4,096"
    grown = float(_metric(at, "Materialized ÷ ELASTIC memory").rstrip("×")) / ratio
    assert 3.0 < grown < 6.0, grown  # "grows about fourfold"
    assert float(_metric(at, "SASRec ÷ ELASTIC FLOPs at this N").rstrip("×")) > flops  # "too"

    at = open_page(LAB, guide.query(crossover))
    time_at, memory_at = (_crossover(at, f"ELASTIC cheaper in {q}") for q in ("FLOPs", "memory"))
    assert time_at and memory_at
    at.select_slider(key="k").set_value(8).run()  # "both crossovers move to shorter histories"
    assert _crossover(at, "ELASTIC cheaper in FLOPs") < time_at
    assert _crossover(at, "ELASTIC cheaper in memory") < memory_at
    at.select_slider(key="k").set_value(64).run()
    assert _metric(at, "ELASTIC cheaper in memory") == "not within N ≤ 65,536"
    assert _crossover(at, "ELASTIC cheaper in FLOPs") < 1000  # "past a few hundred items"
    assert "*not within N ≤ 65,536*" in guide.step(crossover).look  # quoted as the page says it


def test_the_dispatcher_and_memory_steps_start_over_from_the_page_presets():
    picture, experiment = (
        n for n, s in enumerate(guide.STEPS, 1) if s.url_path == "dispatcher_attention"
    )
    at = open_page(DISPATCHER, guide.query(picture))
    last_layer = at.selectbox(key="layer").value
    at.selectbox(key="layer").select(0)
    at.selectbox(key="expert").select(2)
    at.radio(key="experiment").set_value("random").run()
    at.query_params.clear()
    at.switch_page(HOME).run()
    at.query_params.update(guide.query(experiment))
    at.switch_page(DISPATCHER).run()
    no_exception(at)
    assert at.selectbox(key="layer").value == last_layer  # the model's last layer, as preset
    assert at.selectbox(key="expert").value == 0
    assert at.radio(key="experiment").value == "donor"

    memory = next(n for n, s in enumerate(guide.STEPS, 1) if s.url_path == "interest_memory")
    at.query_params.clear()
    at.query_params.update(guide.query(memory))
    at.switch_page(MEMORY).run()
    strongest = at.number_input(key="slot").value
    assert strongest == _strongest_slot(at)
    at.number_input(key="slot").set_value(strongest + 1).run()
    at.query_params.clear()
    at.switch_page(HOME).run()
    at.query_params.update(guide.query(memory))
    at.switch_page(MEMORY).run()
    no_exception(at)
    assert at.number_input(key="slot").value == strongest  # the user's strongest slot again


ELSEWHERE = next(n for n, s in enumerate(guide.STEPS, 1) if s.url_path != "complexity_lab")


@pytest.mark.parametrize("query", [{}, {"step": "99"}, {"step": "x"}, guide.query(ELSEWHERE)])
def test_a_page_shows_no_banner_without_a_step_of_its_own(query):
    at = open_page(LAB, query)
    no_exception(at)
    assert not _banner(at)
    assert not any(link.proto.label == "Back to the path" for link in at.get("page_link"))


def test_dispatcher_page_draws_both_stages_and_the_linked_views():
    at = open_page(DISPATCHER)
    no_exception(at)
    maps = figure_titled(at, "Stage 1")  # both stages, over one x-axis
    assert maps == figure_titled(at, "Stage 2")
    k, n = len(maps["layout"]["yaxis"]["ticktext"]), max(maps["data"][0]["x"])
    assert len(maps["data"][0]["x"]) == k * n
    assert len(maps["data"][1]["x"]) == k * n and maps["data"][1]["yaxis"] == "y2"
    figure_titled(at, "History items it gathers")
    figure_titled(at, "Catalogue items it points to")
    assert any("NMI" in m.label for m in at.metric)  # synthetic: planted interests beside
    assert any("not explanations" in i.value for i in at.info)


def test_dispatcher_page_follows_the_user_the_expert_and_the_head():
    at = open_page(DISPATCHER)
    before = figure_titled(at, "Stage 1")["data"][0]["marker"]["color"]
    at.selectbox(key="user").select(at.selectbox(key="user").options[3]).run()
    no_exception(at)
    assert figure_titled(at, "Stage 1")["data"][0]["marker"]["color"] != before

    before_gathered = figure_titled(at, "History items it gathers")["layout"]["yaxis"]["ticktext"]
    at.selectbox(key="expert").select(2).run()
    no_exception(at)
    assert (
        figure_titled(at, "History items it gathers")["layout"]["yaxis"]["ticktext"]
        != before_gathered
    )
    outlines = figure_titled(at, "Stage 1")["layout"]["shapes"]  # the row in both stages
    assert [(o["yref"], o["y0"], o["y1"]) for o in outlines] == [("y", 1.5, 2.5), ("y2", 1.5, 2.5)]

    stage1_mean = figure_titled(at, "Stage 1")["data"][0]["marker"]["color"]
    at.selectbox(key="head").select("0").run()
    assert figure_titled(at, "Stage 1")["data"][0]["marker"]["color"] != stage1_mean


def test_dispatcher_page_reads_its_state_from_the_url():
    shared = open_page(DISPATCHER, query={"user": "6", "expert": "D3", "layer": "1"})
    no_exception(shared)
    assert shared.selectbox(key="user").value == "6"
    assert shared.selectbox(key="expert").value == 2
    assert shared.selectbox(key="layer").value == 0
    assert any("Interest expert D3" in s.value for s in shared.subheader)


def test_the_user_of_a_shared_link_follows_every_page_switch():
    at = open_page(DISPATCHER, query={"user": "17"})
    assert at.selectbox(key="user").value == "17"
    for page in (MEMORY, RECOMMEND, DISPATCHER):
        at.query_params.clear()  # a click in the sidebar navigation drops the URL's query
        at.switch_page(page).run()
        no_exception(at)
        assert at.selectbox(key="user").value == "17", page
        assert at.query_params.get("user") == "17", page  # the link stays shareable


def test_a_user_chosen_in_this_session_wins_over_a_stale_widget():
    at = open_page(RECOMMEND)
    at.session_state["selected_user"] = "42"  # what another page of this session chose
    at.switch_page(MEMORY).run()
    no_exception(at)
    assert at.selectbox(key="user").value == "42"
    assert at.query_params.get("user") == "42"


def _strongest_slot(at) -> int:
    caption = next(c.value for c in at.caption if c.value.startswith("This user's slots"))
    return int(caption.split("D1 slot ")[1].split(" ")[0])


def test_memory_page_keeps_a_slot_per_user_across_page_switches():
    at = open_page(MEMORY)
    assert at.number_input(key="slot").value == _strongest_slot(at)
    at.number_input(key="slot").set_value(5).run()
    at.switch_page(RECOMMEND).run()
    at.switch_page(MEMORY).run()
    assert at.number_input(key="slot").value == 5  # same user: the chosen slot stays

    at.switch_page(DISPATCHER).run()
    at.selectbox(key="user").select(at.selectbox(key="user").options[7]).run()
    at.switch_page(MEMORY).run()
    no_exception(at)
    assert at.selectbox(key="user").value == at.selectbox(key="user").options[7]
    assert at.number_input(key="slot").value == _strongest_slot(at)  # not the earlier user's


def test_the_user_caption_says_how_much_of_the_history_the_model_reads():
    at = open_page(DISPATCHER)
    caption = next(c.value for c in at.caption if "items in the history" in c.value)
    total = int(caption.split(" ")[0])
    n = max(figure_titled(at, "Stage 1")["data"][0]["x"])  # positions on the grid
    assert total - 1 > n  # the demo's first user has more history than the model reads
    assert f"the model reads the last N = {n} of the {total - 1}" in caption


def test_synthetic_groups_are_called_planted_interests():
    at = open_page(MEMORY)
    columns = list(at.dataframe[0].value.columns)
    assert "planted interest" in columns and "genre" not in columns
    at = open_page(RECOMMEND)
    assert "planted interest" in at.dataframe[0].value.columns


def test_memory_page_shows_the_grid_the_statistics_and_a_slot():
    at = open_page(MEMORY)
    no_exception(at)
    grid = figure_titled(at, "Interest memory")
    cells = grid["data"][0]
    assert len(cells["x"]) == 256  # the demo's K
    labels = {m.label for m in at.metric}
    assert {"Slots used", "Dead slots", "KL to uniform", "Busiest slot"} <= labels
    figure_titled(at, "How evenly the slots are used")
    assert any("retrieved by" in s.value for s in at.subheader)


def test_memory_page_follows_the_slot_and_the_user():
    at = open_page(MEMORY)
    rings = figure_titled(at, "Interest memory")["data"][-1]["hovertext"]
    at.selectbox(key="user").select(at.selectbox(key="user").options[7]).run()
    no_exception(at)
    assert figure_titled(at, "Interest memory")["data"][-1]["hovertext"] != rings
    busiest = int(
        max(
            range(256),
            key=lambda s: figure_titled(at, "Interest memory")["data"][0]["marker"]["color"][s],
        )
    )
    at.number_input(key="slot").set_value(busiest).run()
    no_exception(at)
    (selected,) = figure_titled(at, "Interest memory")["layout"]["shapes"]
    assert (selected["yanchor"], selected["xanchor"]) == divmod(busiest, 16)
    assert any(f"Slot {busiest}:" in s.value for s in at.subheader)
    assert at.dataframe, "the items the slot's users share"


def test_a_slot_shows_which_dispatcher_of_each_of_its_users_it_is():
    at = open_page(MEMORY)
    no_exception(at)
    slot = at.number_input(key="slot").value  # the user's strongest slot: their D1
    users = figure_titled(at, f"Who uses slot {slot}")
    rows = len(users["layout"]["yaxis"]["ticktext"])
    assert "(chosen)" in users["layout"]["yaxis"]["ticktext"][0]  # this user comes first
    outlined = users["layout"]["shapes"]
    assert len(outlined) == rows  # one outlined dispatcher per user: the one that is the slot
    custom = np.reshape(users["data"][0]["customdata"], (rows, -1, 5))
    assert all(custom[int(o["yanchor"]), int(o["xanchor"]), 3] == slot for o in outlined)
    assert outlined[0]["xanchor"] == 0  # D1 for the chosen user
    assert any(m.value.startswith("**As which dispatcher its") and "D1 for" in m.value
               for m in at.markdown)  # fmt: skip
    (link,) = [p for p in at.get("page_link") if "Dispatcher attention" in p.proto.label]
    assert "D1 of user" in link.proto.label
    other = next(s for s in range(256) if s not in _user_slots(at))
    at.number_input(key="slot").set_value(other).run()
    no_exception(at)
    assert not [p for p in at.get("page_link") if "Dispatcher attention" in p.proto.label]


def _user_slots(at) -> list[int]:
    caption = next(c.value for c in at.caption if c.value.startswith("This user's slots"))
    return [int(part.split(" ")[0]) for part in caption.split(" slot ")[1:]]


def test_recommend_page_lists_both_models_and_what_each_dispatcher_changes():
    at = open_page(RECOMMEND)
    no_exception(at)
    assert len(at.dataframe[0].value) == 10 and len(at.dataframe[1].value) == 10  # both models
    assert "driven by" not in at.dataframe[0].value.columns  # no attribution that oversells
    grid = figure_titled(at, "What changes when a dispatcher is removed")
    assert len(grid["layout"]["yaxis"]["ticktext"]) == 10
    k = len(set(grid["data"][0]["x"]))  # one column per dispatcher
    summary = next(d.value for d in at.dataframe if "top-10 items replaced" in d.value.columns)
    assert len(summary) == k == 8  # one row per dispatcher of the demo
    assert any("dispatcher" in m.value and "list" in m.value for m in at.markdown)
    ablation = next(d.value for d in at.dataframe if "Δ NDCG@10" in d.value.columns)
    assert "another user's experts" in ablation["intervention"].tolist()
    assert any(c.value.startswith("Measured by `benchmarks/ablation.py`") for c in at.caption)
    first = at.dataframe[0].value["item"].tolist()
    at.selectbox(key="user").select(at.selectbox(key="user").options[9]).run()
    no_exception(at)
    assert at.dataframe[0].value["item"].tolist() != first


def _experiment_table(at):
    return next(d.value for d in at.dataframe if {"before", "after"} <= set(d.value.columns))


def test_dispatcher_page_runs_a_knockout_beside_the_original():
    at = open_page(DISPATCHER)
    no_exception(at)
    assert at.radio(key="experiment").value == "knockout"
    at.button(key="run_experiment").click().run()
    table = _experiment_table(at)
    assert len(table) == 10
    assert {"score before", "score after", "then at", "was at"} <= set(table.columns)
    assert any(m.value.startswith("With D1 knocked out, ") for m in at.markdown)
    assert any(m.label == "Held-out item's rank" for m in at.metric)
    after = figure_titled(at, "Stage 2 with D1 knocked out")
    k = len(after["layout"]["yaxis2"]["ticktext"])
    weights = np.reshape(after["data"][1]["marker"]["color"], (k, -1))  # stage 2, below
    assert np.all(weights[0] == 0) and weights[1:].max() > 0  # D1 reads nothing now
    figure_titled(at, "Stage 1 with D1 knocked out")

    at.selectbox(key="expert").select(2).run()  # a new expert: the old result is not shown,
    no_exception(at)  # and nothing is computed until Run
    assert not any(m.value.startswith("With D") for m in at.markdown)
    assert any("Press Run to knock out D3" in c.value for c in at.caption)
    at.button(key="run_experiment").click().run()
    assert any(m.value.startswith("With D3 knocked out, ") for m in at.markdown)
    figure_titled(at, "Stage 2 with D3 knocked out")


def test_the_experiment_runs_on_demand_not_on_every_click_above():
    at = open_page(DISPATCHER)
    assert not any({"before", "after"} <= set(d.value.columns) for d in at.dataframe)
    assert not any("knocked out" in m.value for m in at.markdown)
    at.button(key="run_experiment").click().run()
    assert len(_experiment_table(at)) == 10
    at.number_input(key="position").set_value(4).run()  # a click in the same row: still shown
    assert len(_experiment_table(at)) == 10
    at.selectbox(key="user").select(at.selectbox(key="user").options[2]).run()  # another user
    no_exception(at)
    assert not any({"before", "after"} <= set(d.value.columns) for d in at.dataframe)


def _grid_weight(at, stage: int, expert: int, t: int) -> float:
    maps = figure_titled(at, "Stage 1")
    k = len(maps["layout"]["yaxis"]["ticktext"])
    return float(np.reshape(maps["data"][stage - 1]["marker"]["color"], (k, -1))[expert, t])


def test_a_selected_position_is_outlined_everywhere_and_its_softmax_shown_with_numbers():
    at = open_page(DISPATCHER, query={"expert": "D2", "position": "6", "head": "1"})
    no_exception(at)
    assert at.number_input(key="position").value == 6
    assert any(s.value.startswith("The softmax behind D2 × position 6") for s in at.subheader)
    maps = figure_titled(at, "Stage 1")
    columns = [s for s in maps["layout"]["shapes"] if s.get("line", {}).get("dash") == "dot"]
    assert [(c["yref"], c["x0"], c["x1"]) for c in columns] == [("y", 5.5, 6.5), ("y2", 5.5, 6.5)]
    cells = [s for s in maps["layout"]["shapes"] if s.get("xsizemode") == "pixel"]
    assert [(c["xanchor"], c["yanchor"]) for c in cells] == [(6, 1), (6, 1)]
    # the recomputed softmax gives back the drawn weight, in both stages
    recomputed = [m.value for m in at.markdown if m.value.startswith("Recomputed: **")]
    assert len(recomputed) == 2
    for text, stage in zip(recomputed, (1, 2), strict=True):
        value = float(text.split("**")[1])
        assert value == pytest.approx(_grid_weight(at, stage, 1, 5), rel=1e-3)
        assert text.endswith(f"the model returned {value:.4g}.")
    assert len(at.latex) >= 2 and any(r"w_{2,6}" in f.value for f in at.latex)
    bars = figure_titled(at, "History items it gathers")
    assert any(label.startswith("▶ ") for label in bars["layout"]["yaxis"]["ticktext"])
    strip = next(f for f in figures(at) if f["layout"].get("legend", {}).get("title"))
    assert [(s["x0"], s["x1"]) for s in strip["layout"]["shapes"]] == [(5.5, 6.5)]


def test_the_mean_head_shows_each_heads_softmax_and_their_mean():
    at = open_page(DISPATCHER, query={"position": "3"})
    no_exception(at)
    means = [m.value for m in at.markdown if m.value.startswith("The grid shows the mean")]
    assert len(means) == 2  # stage 1 and stage 2
    value = float(means[0].split("**")[1])
    assert value == pytest.approx(_grid_weight(at, 1, 0, 2), rel=1e-3)


def test_every_layer_and_head_is_drawn_small_and_the_chosen_one_outlined():
    at = open_page(DISPATCHER)
    view = figure_titled(at, "Every layer and head")
    labels = [a["text"] for a in view["layout"]["annotations"]]
    layers, heads = len(at.selectbox(key="layer").options), len(at.selectbox(key="head").options)
    assert len(labels) == layers * heads  # the heads and their mean, per layer
    targets = view["data"][1]
    assert {tuple(c) for c in targets["customdata"]} == {
        (layer, col) for layer in range(layers) for col in range(heads)
    }

    def outlined_panel(fig) -> tuple[int, int]:
        (outline,) = fig["layout"]["shapes"]
        inside = [
            tuple(c) for x, y, c in zip(targets["x"], targets["y"], targets["customdata"],
                                        strict=True)
            if outline["x0"] < x < outline["x1"] and outline["y0"] < y < outline["y1"]
        ]  # fmt: skip
        (panel,) = set(inside)
        return panel

    assert outlined_panel(view) == (layers - 1, heads - 1)  # default: the last layer, the mean
    at.selectbox(key="layer").select(0).run()
    at.selectbox(key="head").select("1").run()
    assert outlined_panel(figure_titled(at, "Every layer and head")) == (0, 1)  # head 2
    at.segmented_control(key="overview").set_value(2).run()
    no_exception(at)
    assert "stage 2" in figure_titled(at, "Every layer and head")["layout"]["title"]["text"]


def test_a_link_presets_another_users_experts_and_a_knockout_can_be_picked():
    at = open_page(DISPATCHER, query={"experiment": "Another user's experts"})
    no_exception(at)
    assert at.radio(key="experiment").value == "donor"
    assert len(_experiment_table(at)) == 10
    assert any("'s experts, " in m.value for m in at.markdown)

    at.radio(key="experiment").set_value("knockout").run()
    no_exception(at)
    table = _experiment_table(at)
    assert len(table) == 10 and table["before"].tolist()  # the before/after table
    assert any("knocked out" in m.value for m in at.markdown)


def test_every_experiment_renders_without_an_exception():
    at = open_page(DISPATCHER)
    # synthetic data: planted interests can be appended
    assert at.radio(key="experiment").options[-1] == "Append items of a planted interest"
    for kind in EXPERIMENTS:
        at.radio(key="experiment").set_value(kind).run()  # a change runs it; Run runs it too
        if kind == "knockout":  # the default: choosing it again changes nothing
            at.button(key="run_experiment").click().run()
        no_exception(at)
        assert len(_experiment_table(at)) == 10, kind
        if kind == "remove":  # preset: the three items the picked expert gathers most
            assert len(at.multiselect(key="remove_items").value) == 3


def test_complexity_lab_moves_curves_with_the_sliders():
    at = open_page(LAB)
    no_exception(at)
    fig = figure_titled(at, "time: FLOPs")
    elastic = next(t for t in fig["data"] if t.get("name") == "ELASTIC")["y"]
    axis = fig["layout"]["yaxis"]["range"]
    at.select_slider(key="k").set_value(64).run()
    no_exception(at)
    fig2 = figure_titled(at, "time: FLOPs")
    assert next(t for t in fig2["data"] if t.get("name") == "ELASTIC")["y"] != elastic
    assert fig2["layout"]["yaxis"]["range"] == axis  # the frame stays fixed
    assert at.latex, "formulas one click away"


def test_complexity_lab_hover_splits_each_point_into_its_terms_and_draws_slope_guides():
    at = open_page(LAB)
    fig = figure_titled(at, "time: FLOPs")
    elastic = next(t for t in fig["data"] if t.get("name") == "ELASTIC")
    assert len(elastic["text"]) == len(elastic["x"])
    assert "stage-1 logits (∝ N·k)" in elastic["text"][-1]
    sdpa = next(t for t in fig["data"] if t.get("name") == "SASRec (SDPA, fused)")
    assert "Q·Kᵀ and weights·V (∝ N²)" in sdpa["text"][-1].split("<br>")[0]  # N² dominates
    guides = [t for t in fig["data"] if t.get("name", "").startswith("slope")]
    assert sorted(t["name"] for t in guides) == [
        "slope 1 through ELASTIC",
        "slope 1 through ELASTIC",
        "slope 2 through SASRec (SDPA, fused)",
        "slope 2 through SASRec (materialized N×N)",
    ]
    assert elastic["y"][-1] == guides[0]["y"][-1]


def test_complexity_lab_marks_the_current_n_and_the_crossover():
    at = open_page(LAB)
    at.select_slider(key="N").set_value(4096).run()
    fig = figure_titled(at, "time: FLOPs")
    assert fig["layout"]["shapes"][0]["x0"] == 4096
    assert any(t.get("name") == "crossover" for t in fig["data"])
    assert any("cheaper" in m.label for m in at.metric)


def test_complexity_lab_reads_sliders_from_the_url():
    at = open_page(LAB, query={"N": "256", "k": "32"})
    no_exception(at)
    assert at.select_slider(key="N").value == 256
    assert at.select_slider(key="k").value == 32


def test_complexity_lab_measures_on_request_and_draws_the_measured_curves(monkeypatch):
    from elastic import app_support
    from elastic.app import lab

    app_support._measurements.clear()  # the server's measurements outlive an AppTest
    monkeypatch.setattr(lab, "measurement_grid", lambda device_type: [16, 32])  # seconds
    tiny = {"N": "16", "k": "2", "K": "16", "d": "32", "layers": "1", "batch": "1"}
    at = open_page(LAB, query=tiny)
    at.button(key="measure_start").click().run()
    deadline = time.monotonic() + 120

    def measuring() -> bool:
        return any(b.key == "measure_stop" for b in at.button)

    while time.monotonic() < deadline and measuring():
        time.sleep(0.5)
        at.run()
    no_exception(at)
    assert not measuring()
    fig = figure_titled(at, "measured time of one call")
    curves = [t for t in fig["data"] if t.get("mode") == "lines+markers"]
    assert len(curves) == 6 and all(t["x"] == [16, 32] for t in curves)  # 3 forms × 2 panels
    assert all(v > 0 for t in curves for v in t["y"])


def test_complexity_lab_keeps_a_mode_when_the_active_one_is_clicked_again():
    at = open_page(LAB)
    at.segmented_control(key="mode").set_value("train").run()
    at.segmented_control(key="mode").set_value(None).run()  # a click on the active button
    no_exception(at)
    assert at.segmented_control(key="mode").value == "train"
    assert at.query_params.get("mode") == "training"  # never an empty mode=
    empty = open_page(LAB, query={"mode": ""})
    no_exception(empty)
    assert empty.segmented_control(key="mode").value == "infer"


def test_complexity_lab_puts_each_formula_on_lines_that_fit():
    at = open_page(LAB)
    memory_lines = [f.value for f in at.latex if "memory" in f.value]
    assert len(memory_lines) == 2
    for formula in memory_lines:  # the memory term starts a line of its own
        assert "aligned" in formula and r"\\ \text{memory}" in formula


def test_memory_axis_ticks_say_bytes_in_binary_units():
    at = open_page(LAB)
    fig = figure_titled(at, "memory: predicted peak")
    assert all(t.endswith(("B", "KiB", "MiB", "GiB", "TiB", "PiB")) for t in
               fig["layout"]["yaxis2"]["ticktext"])  # fmt: skip
    elastic = [t for t in fig["data"] if t.get("name") == "ELASTIC"]
    assert elastic[0]["customdata"][0].endswith("FLOPs")
    assert elastic[1]["customdata"][0].endswith("iB") or elastic[1]["customdata"][0].endswith(" B")


def test_train_page_shows_the_form_and_refuses_a_bad_setting():
    at = open_page(TRAIN)
    no_exception(at)
    assert at.button(key="FormSubmitter:train_form-Train ELASTIC and SASRec") is not None
    at.number_input(key="tf_min_len").set_value(10)  # shortest history 10 ...
    at.number_input(key="tf_max_len").set_value(5)  # ... longer than the longest
    at.button(key="FormSubmitter:train_form-Train ELASTIC and SASRec").click().run()
    no_exception(at)
    assert any("longest history" in e.value for e in at.error)


def test_train_form_opens_on_the_generators_own_defaults():
    """One place for the defaults: the form shows `SyntheticConfig()`'s settings."""
    from elastic.data import SyntheticConfig

    at = open_page(TRAIN)
    config = SyntheticConfig()
    for key, field in (("tf_users", "num_users"), ("tf_items", "num_items"),
                       ("tf_interests", "planted_interests"), ("tf_per_user",
                                                               "interests_per_user"),
                       ("tf_facets", "facets"), ("tf_session", "session_len"),
                       ("tf_data_seed", "seed"), ("tf_min_len", "min_seq_len"),
                       ("tf_max_len", "max_seq_len"), ("tf_archetypes", "archetypes")):
        assert at.number_input(key=key).value == getattr(config, field), key
    assert at.slider(key="tf_taste").value == pytest.approx(config.taste)


@pytest.mark.slow
def test_train_page_trains_in_the_background_and_offers_the_model():
    at = open_page(TRAIN)
    for key, value in (("tf_users", 100), ("tf_items", 100), ("tf_min_len", 10),
                       ("tf_max_len", 20)):
        at.number_input(key=key).set_value(value)
    sliders = {s.label: s for s in at.select_slider}
    sliders["History length N"].set_value(10)
    sliders["Width d"].set_value(16)
    {s.label: s for s in at.slider}["Epochs (at most)"].set_value(2)
    at.button(key="FormSubmitter:train_form-Train ELASTIC and SASRec").click().run()
    no_exception(at)
    deadline = time.time() + 180
    while time.time() < deadline:
        time.sleep(1.0)
        at.run()
        no_exception(at)
        if any("finished" in s.value for s in at.subheader):
            break
    assert any("finished" in s.value for s in at.subheader), [s.value for s in at.subheader]
    figure_titled(at, "training loss")
    at.button(key="train_use").click().run()  # "Show these models everywhere"
    assert at.session_state["model_source"] == "session"
    at.switch_page(DISPATCHER).run()
    no_exception(at)
    stage1 = figure_titled(at, "Stage 1")["data"][0]
    assert max(stage1["x"]) <= 10  # the model trained here reads N = 10, the demo 50


def test_train_page_reports_an_unreadable_upload_in_a_sentence():
    at = open_page(TRAIN)
    at.segmented_control(key="train_source").set_value("upload").run()
    at.file_uploader(key="train_upload").set_value(
        ("ratings.csv", b"\xff\xfe\x00garbage\x00\x81", "text/csv")
    ).run()
    no_exception(at)
    assert any("ratings.csv could not be read" in e.value for e in at.error)


def _interaction_csv(users: int = 30, per_user: int = 8) -> bytes:
    rows = ["uid,movie,ts"]
    for u in range(users):
        rows += [f"u{u},m{(u * 3 + t) % 40},{t}" for t in range(per_user)]
    return "\n".join(rows).encode()


@pytest.mark.slow
def test_train_page_trains_on_an_uploaded_table_with_the_chosen_columns():
    at = open_page(TRAIN)
    at.segmented_control(key="train_source").set_value("upload").run()
    at.file_uploader(key="train_upload").set_value(("log.csv", _interaction_csv(), "text/csv"))
    at.run()
    user_col, item_col, time_col = at.selectbox[:3]
    assert user_col.options == ["uid", "movie", "ts"]
    item_col.set_value("movie")
    time_col.set_value("ts")
    sliders = {s.label: s for s in at.select_slider}
    sliders["History length N"].set_value(10)
    sliders["Width d"].set_value(16)
    {s.label: s for s in at.slider}["Epochs (at most)"].set_value(1)
    at.button(key="FormSubmitter:train_form-Train ELASTIC and SASRec").click().run()
    no_exception(at)
    deadline = time.time() + 180
    while time.time() < deadline and not any(
        "finished" in s.value or "failed" in s.value for s in at.subheader
    ):
        time.sleep(1.0)
        at.run()
    assert any("upload: log.csv — finished" in s.value for s in at.subheader), [
        s.value for s in at.subheader
    ]


def test_train_form_keeps_its_submitted_settings_across_a_page_switch():
    at = open_page(TRAIN)
    for key, value in (
        ("tf_users", 100),
        ("tf_items", 100),
        ("tf_min_len", 10),
        ("tf_max_len", 20),
    ):
        at.number_input(key=key).set_value(value)
    at.select_slider(key="tf_seq_len").set_value(10)
    at.select_slider(key="tf_d").set_value(16)
    at.slider(key="tf_epochs").set_value(1)
    at.button(key="FormSubmitter:train_form-Train ELASTIC and SASRec").click().run()
    at.switch_page(LAB).run()
    at.switch_page(TRAIN).run()
    no_exception(at)
    assert at.number_input(key="tf_users").value == 100
    assert at.select_slider(key="tf_seq_len").value == 10
    assert any(s.value.startswith("Run ") for s in at.subheader)  # the run went on
    end_training(at)


@pytest.mark.slow
def test_train_page_stops_resumes_and_saves(monkeypatch, tmp_path):
    from elastic.app import jobs

    monkeypatch.setattr(jobs, "RUNS_DIR", tmp_path)  # saves land here, not in runs/
    at = open_page(TRAIN)
    for key, value in (
        ("tf_users", 200),
        ("tf_items", 200),
        ("tf_min_len", 20),
        ("tf_max_len", 40),
    ):
        at.number_input(key=key).set_value(value)
    at.select_slider(key="tf_d").set_value(16)
    at.slider(key="tf_epochs").set_value(100)
    at.slider(key="tf_patience").set_value(20)
    at.button(key="FormSubmitter:train_form-Train ELASTIC and SASRec").click().run()
    deadline = time.time() + 120
    while time.time() < deadline and not any("training" in m.value for m in at.markdown):
        time.sleep(0.5)
        at.run()
    at.button(key="train_stop").click().run()
    while time.time() < deadline and not any("— stopped" in s.value for s in at.subheader):
        time.sleep(0.5)
        at.run()
    assert any("— stopped" in s.value for s in at.subheader)
    at.button(key="train_resume").click().run()
    no_exception(at)
    assert any("— training" in s.value for s in at.subheader)
    at.button(key="train_stop").click().run()
    while time.time() < deadline and not any("— stopped" in s.value for s in at.subheader):
        time.sleep(0.5)
        at.run()
    at.button(key="train_save").click().run()
    no_exception(at)
    assert any("Saved to" in c.value for c in at.caption)
    assert at.get("download_button")
    assert list(tmp_path.glob("*.zip"))
