"""Plotly figures of what the library computes, as pure functions (no Streamlit import), so
they are tested without a browser. Modules:

- `grid`: clickable grids drawn as square scatter markers;
- `attention`: dispatcher stage-1 / stage-2 weights, ranked items, planted interests;
- `memory`: the product-key slot grid and its usage;
- `complexity`: analytic and measured cost curves of the three attention forms;
- `training`: loss and metric curves of ELASTIC and SASRec;
- `recommend`: what removing each dispatcher does to ELASTIC's recommendations;
- `analysis`: the arrays those figures draw, computed from model outputs (needs torch);
- `interventions`: one user's pass as trained and under an intervention — knocked-out
  dispatchers, another user's experts, random slots, the branch off, an edited history
  (needs torch).

Nothing is imported here on purpose: the app's first screen draws without importing torch.
"""
