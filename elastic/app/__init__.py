"""The teaching app's parts that need no Streamlit, each tested without it.

- `paths` — where the app's files lie: the shipped demo, the measured ablation, saved runs;
- `bundles` — `ModelBundle` (a dataset and the models trained on it) and the shipped demo;
- `requests` — what the Train form asks for (`TrainRequest`) and whether it can run;
- `jobs` — `TrainingJob`: ELASTIC and SASRec trained side by side in background threads;
- `lab` — the Complexity lab: its settings, analytic curves and background measurement.

`elastic/app_support.py` wraps them for Streamlit (caches, session state) and the pages in
`app_pages/` draw them. None of these modules imports Streamlit, nor torch when it is imported
(the functions that need torch import it), so the first page draws while torch still loads.
"""
