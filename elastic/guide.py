"""The guided path: seven steps an instructor runs a one-hour workshop from, as data.

Each step names a page of the app, the question it answers, what the participant should see
there (in the page's own words: metric labels, section titles), the minutes it takes, and the
whole view it opens. The view is complete — every widget of the page that outlives a page
switch is set or started over — so a step never inherits what an earlier step, or an earlier
visit, left behind (the Complexity lab's sliders are bound to the URL, and Streamlit keeps a
bound widget's value across page switches: a lesson at N = 4,096 used to leave the next
lesson's lab at N = 4,096).

The step's number travels in the URL (`?step=3`), so a step is a link an instructor can share;
Home lists the steps, and each page shows its step's question, what to look for and the next
step (`elastic.app_guide`). No Streamlit or torch import here: `tests/test_guide.py` checks the
path against the page files themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

HOME = "app_pages/home.py"
STEP_PARAM = "step"  # the URL query parameter that holds a step's number (1-based)


@dataclass(frozen=True)
class Step:
    """One step of the path: a question, a page, and the view of that page that answers it."""

    title: str  # short, for a card and a "Next:" link (a long title was cut off on Home)
    page: str  # the page file, relative to the repository root
    question: str
    look: str  # what you should see, in the page's words; Markdown
    minutes: int  # the steps add up to a one-hour workshop
    # the view's URL query: every URL-bound widget of the page whose value does not depend on
    # the loaded model, written the way the widget writes it into the URL
    params: Mapping[str, str] = field(default_factory=dict)
    # session-state keys the page starts over from when the step opens: bound widgets whose
    # default depends on the model (the last layer, the user's strongest slot), the state a page
    # derives from them, and settings that are not in the URL
    reset: tuple[str, ...] = ()
    # texts `look` points at; tests/app/test_pages.py finds each on the step's view
    landmarks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    @property
    def url_path(self) -> str:
        """The page's URL path, as `st.Page` derives it from the file name."""
        return Path(self.page).stem

    @property
    def page_title(self) -> str:
        """The page's title in the navigation (`app.py` names each page after its file)."""
        return self.url_path.replace("_", " ").capitalize()

    @property
    def state_keys(self) -> tuple[str, ...]:
        """Every session-state key the step's view sets or starts over."""
        return (*self.params, *self.reset)


# The lab's sliders at the page's defaults: every step on the lab sets all seven.
_LAB = {"mode": "inference", "N": "1024", "k": "8", "K": "256", "d": "64", "layers": "2",
        "batch": "32"}  # fmt: skip
# The dispatcher page: the layer starts on the model's last one; the experiment's own settings
# (donor, seed, removed items, planted interest) start from the page's presets.
_DISPATCHER_RESET = ("layer", "position", "overview", "donor", "slot_seed", "remove_items",
                     "plant_interest", "plant_count")
# The Train form keeps its settings for the whole session (persist_state="session"); the train
# step starts it on the defaults, which are what the shipped demo was trained with.
# fmt: off
_TRAIN_FORM = (
    "train_source", "tf_users", "tf_items", "tf_interests", "tf_per_user", "tf_facets",
    "tf_session", "tf_taste", "tf_data_seed", "tf_min_len", "tf_max_len", "tf_archetypes",
    "tf_five_core",
    "tf_seq_len", "tf_d", "tf_layers", "tf_heads", "tf_k", "tf_slots", "tf_dropout", "tf_seed",
    "tf_epochs", "tf_batch", "tf_lr", "tf_patience",
)
# fmt: on

STEPS: tuple[Step, ...] = (
    Step(
        title="Why N² hurts",
        page="app_pages/complexity_lab.py",
        question="Why does self-attention over a long history hurt, and what does ELASTIC pay "
        "instead?",
        look="Both panels are log-log, so a power law is a straight line: in **memory: predicted "
        "peak** the red SASRec-materialized curve climbs twice as steeply as the teal ELASTIC "
        "one — N² against N. The curves are drawn for every N; the dotted line is the N you "
        "picked. Drag **History length N** from 1,024 to 4,096: **Materialized ÷ ELASTIC "
        "memory** grows about fourfold (it doubles with every doubling of N), and **SASRec ÷ "
        "ELASTIC FLOPs at this N** grows too — the fused kernel (SDPA, amber) never stores the "
        "N × N scores, but it still computes them.",
        minutes=7,
        params=_LAB,
        landmarks=(
            "memory: predicted peak",
            "History length N",
            "Materialized ÷ ELASTIC memory",
            "SASRec ÷ ELASTIC FLOPs at this N",
        ),
    ),
    Step(
        title="Dispatchers gather",
        page="app_pages/dispatcher_attention.py",
        question="What does one dispatcher gather from a user's history, and where does it point "
        "in the catalogue?",
        look="The first grid has a row per dispatcher (D1 … Dk) and a column per history item; "
        "each row sums to 1. Click a row: **History items it gathers** lists its heaviest items, "
        "coloured by planted interest — a dispatcher that has found an interest gathers mostly "
        "one colour. Under **Against the planted interests**, **Agreement for this user (NMI)** "
        "sits above **Shuffled (chance)** for most users: the dispatchers split the history "
        "along the planted interests far more than chance would. The grid shows where weight "
        "goes, not whether the list needs it: *Swap the experts* asks that.",
        minutes=10,
        params={"head": "mean", "expert": "D1", "experiment": "Knock out a dispatcher"},
        reset=_DISPATCHER_RESET,
        landmarks=(
            "Stage 1",
            "History items it gathers",
            "Against the planted interests",
            "Agreement for this user (NMI)",
            "Shuffled (chance)",
        ),
    ),
    Step(
        title="What memory stores",
        page="app_pages/interest_memory.py",
        question="Where do a user's k dispatchers come from, and what do the users who share a "
        "memory slot have in common?",
        look="The grid is the √K × √K product-key memory: the colour says how many users "
        "retrieve a slot, the rings are this user's k slots (the larger the ring, the larger the "
        "gate). The page opens on the user's strongest slot; **Their histories by planted "
        "interests** sets its users against all users — the bars that stand out are what the "
        "slot stores. Click a dark slot, then a pale one. **Slots used** and **Dead slots** say "
        "how much of the memory training put to use.",
        minutes=8,
        reset=("slot", "slot_user"),
        landmarks=(
            "Interest memory",
            "Slots used",
            "Dead slots",
            "Their histories by planted interests",
        ),
    ),
    Step(
        title="What comes next",
        page="app_pages/recommend.py",
        question="What does each model recommend next, and what changes when one dispatcher is "
        "removed?",
        look="ELASTIC and SASRec each list ten items; ✓ marks the held-out next item when it "
        "makes the list, and the caption above each list gives its rank among every item the "
        "user has not seen. Under **What changes when a dispatcher is removed**, each column is "
        "one run without that dispatcher: a pale column changed nothing, an outlined cell left "
        "the top 10. The sentence above the grid says whether any single dispatcher drives this "
        "user's list; compare two or three users.",
        minutes=9,
        landmarks=(
            "ELASTIC",
            "SASRec",
            "What changes when a dispatcher is removed",
            "top-10 items replaced",
        ),
    ),
    Step(
        title="Swap the experts",
        page="app_pages/dispatcher_attention.py",
        question="If this user got another user's experts from the memory, would the "
        "recommendations change?",
        look="Guess first. The sentence above the table says whether the top 10 changed and how "
        "far the scores moved against the list's own spread; **Held-out item's rank** and "
        "**Top-10 items replaced** count it, and the maps below show the borrowed dispatchers at "
        "work. Then read **Over all users: the measured ablation**: which interventions move "
        "NDCG@10 by more than 2 % over every user. Then try **Dispatcher branch off**: on the "
        "shipped demo removing the dispatchers costs about half of NDCG@10, while another "
        "user's experts stay within 2 % — the dispatchers drive the list, which memory slots "
        "fill them does not.",
        minutes=8,
        params={"head": "mean", "expert": "D1", "experiment": "Another user's experts"},
        reset=_DISPATCHER_RESET,
        landmarks=(
            "Experiment: what does the prediction do without it?",
            "'s experts",
            "Held-out item's rank",
            "Top-10 items replaced",
            "Over all users: the measured ablation",
        ),
    ),
    Step(
        title="When O(N·k) wins",
        page="app_pages/complexity_lab.py",
        question="From which history length is ELASTIC cheaper than SASRec with the fused kernel, "
        "and what do more dispatchers cost?",
        look="The star on each panel is where ELASTIC drops below SASRec-SDPA; **ELASTIC cheaper "
        "in FLOPs** and **ELASTIC cheaper in memory** give that N. Set **Dispatchers k** to 8: "
        "both crossovers move to shorter histories. Set it to 64: the memory one reads *not "
        "within N ≤ 65,536* — SDPA's memory grows linearly too, so in memory ELASTIC wins only "
        "by a constant factor, and k spends it; in FLOPs it still wins past a few hundred items.",
        minutes=8,
        params=_LAB | {"N": "4096", "k": "32"},
        landmarks=("Dispatchers k", "ELASTIC cheaper in FLOPs", "ELASTIC cheaper in memory"),
    ),
    Step(
        title="Train your own",
        page="app_pages/train.py",
        question="Does ELASTIC learn as well as SASRec on the same data, and what does training "
        "it cost?",
        look="The form holds the defaults, the settings the shipped demo was trained with. Press "
        "**Train ELASTIC and SASRec**: both models train at once in the background, with "
        "progress bars and live loss curves, and switching pages does not stop them. When both "
        "are done, the table gives their validation and test HR@10, NDCG@10 and MRR — compare "
        "with the demo's on Home (close, not equal: the two training threads share one random "
        "generator). Then **Show these models everywhere** and open *Dispatchers gather* again: "
        "the grids are your model's.",
        minutes=10,
        reset=_TRAIN_FORM,
        landmarks=("Both models train at once", "Train ELASTIC and SASRec"),
    ),
)


def step(number: int) -> Step:
    """The step with this 1-based number."""
    if not 1 <= number <= len(STEPS):
        raise ValueError(f"the guided path has steps 1 to {len(STEPS)}, not {number}")
    return STEPS[number - 1]


def step_number(value: str | None) -> int | None:
    """The step a URL's `?step=` names, or None when it names none (absent, not a number, or
    outside the path)."""
    if value is None or not value.strip().isdigit():
        return None
    number = int(value)
    return number if 1 <= number <= len(STEPS) else None


def query(number: int) -> dict[str, str]:
    """The URL query that opens a step: its number, then its view."""
    return {STEP_PARAM: str(number), **step(number).params}


def next_step(number: int) -> int | None:
    step(number)
    return number + 1 if number < len(STEPS) else None


def previous_step(number: int) -> int | None:
    step(number)
    return number - 1 if number > 1 else None


def total_minutes() -> int:
    return sum(s.minutes for s in STEPS)
