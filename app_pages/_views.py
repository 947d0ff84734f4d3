"""Views drawn by more than one page. Not a page: `app.py` registers the pages one by one."""

from __future__ import annotations

import streamlit as st

from elastic import app_support as support
from elastic.app.bundles import ModelBundle


def measured_ablation_section(bundle: ModelBundle) -> None:
    """The ablation table measured over all users of the shipped demo, with its source, or a
    sentence saying why it is not shown."""
    record = support.measured_ablation()
    if record is None:
        st.caption("No measured ablation yet: `python benchmarks/ablation.py` writes one.")
        return
    if bundle.key != "demo":
        st.caption(
            "The measured ablation (`benchmarks/results/ablation.md`) describes the shipped "
            "demo, not the model trained in this session: run `python -m elastic ablate` on "
            "its checkpoint to measure it."
        )
        return
    import pandas as pd

    from elastic.viz.interventions import ablation_rows, ablation_source, ablation_verdict

    st.markdown(ablation_verdict(record))
    st.dataframe(
        pd.DataFrame(ablation_rows(record)),
        hide_index=True,
        width="stretch",
        column_config={
            "test NDCG@10": st.column_config.NumberColumn(format="%.4f"),
            "test HR@10": st.column_config.NumberColumn(format="%.4f"),
        },
        key="measured_ablation",
    )
    st.caption(ablation_source(record))
