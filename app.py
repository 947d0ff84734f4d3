"""ELASTIC teaching app. Run: `streamlit run app.py`.

The entry point only builds the navigation, the sidebar and, on a step of the guided path
(`?step=3`), the step's banner above the page (`elastic.app_guide`); each page in app_pages/
composes views from `elastic.viz` (pure figures), `elastic.app` (the models, the jobs and the
lab's data, without Streamlit) and `elastic.app_support` (their caches and session state). The
folder is not called `pages/` on purpose: Streamlit treats a `pages/` folder beside the entry
point as an old-style multipage app until `st.navigation` first runs, so a shared deep link
(/complexity_lab?N=4096) opened on a fresh server would skip app.py entirely.
"""

import streamlit as st

from elastic.openmp import cap_spinning

cap_spinning()  # before anything imports torch: see elastic/openmp.py

from elastic import app_guide  # noqa: E402
from elastic import app_support as support  # noqa: E402
from elastic.app.paths import FAVICON  # noqa: E402

# a local file: a :material/...: favicon is fetched from fonts.gstatic.com by the browser
st.set_page_config(page_title="ELASTIC", page_icon=str(FAVICON), layout="wide")

home = st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True)
pages = {
    "Start": [home],
    "Look inside the model": [
        st.Page(
            "app_pages/dispatcher_attention.py",
            title="Dispatcher attention",
            icon=":material/grid_on:",
        ),
        st.Page("app_pages/interest_memory.py", title="Interest memory", icon=":material/apps:"),
        st.Page("app_pages/recommend.py", title="Recommend", icon=":material/recommend:"),
    ],
    "Measure and train": [
        st.Page("app_pages/complexity_lab.py", title="Complexity lab", icon=":material/speed:"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    ],
}
page = st.navigation(pages)
support.model_source_picker()
support.training_status_badge()
app_guide.step_banner(page.url_path)  # a step of the guided path: its view and question
page.run()
