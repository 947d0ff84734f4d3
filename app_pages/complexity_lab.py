"""Complexity lab: analytic time and memory of SASRec (materialized, SDPA) and ELASTIC as the
sliders move, measured curves on this device on request, and the crossover."""

import streamlit as st

from elastic import app_support as support
from elastic.app import lab

st.title("Complexity lab")
st.caption(
    "Self-attention compares every pair of the N history items: its work grows as N² and, "
    "when the N × N scores are materialized, so does its memory. ELASTIC's dispatchers touch "
    "each item k times: N·k. Move the sliders; the axes stay put so you can watch the curves "
    "move. The dotted line is the N you picked; the star is where ELASTIC becomes cheaper than "
    "SASRec with the fused kernel (SDPA)."
)


def keep_a_mode() -> None:
    """A deselected mode (an empty `mode=` in the URL) falls back to the previous one."""
    if st.session_state["mode"] is None:
        st.session_state["mode"] = st.session_state.get("lab_mode", "infer")
    st.session_state["lab_mode"] = st.session_state["mode"]


# The sliders and everything they drive form a fragment: moving a slider reruns only this part
# (not the sidebar, not the measured section), which keeps a redraw within a frame or two.
@st.fragment
def analytic_lab() -> "lab.LabSettings":
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        if "mode" not in st.session_state and not st.query_params.get("mode"):
            st.session_state["mode"] = "infer"  # the default, also for a link's empty mode=
        mode = st.segmented_control(
            "Mode",
            ["infer", "train"],
            format_func={"infer": "inference", "train": "training"}.get,
            required=True,  # a click on the active mode keeps it selected
            key="mode",
            on_change=keep_a_mode,
            bind="query-params",
        )
        mode = mode or st.session_state.get("lab_mode", "infer")  # a link with an empty mode=
        seq_len = st.select_slider(
            "History length N", lab.LAB_N, value=1024, key="N", bind="query-params"
        )
    with c2:
        k = st.select_slider("Dispatchers k", lab.LAB_K, value=8, key="k", bind="query-params")
        slots = st.select_slider(
            "Memory slots K", lab.LAB_SLOTS, value=256, key="K", bind="query-params"
        )
    with c3:
        d_model = st.select_slider("Width d", lab.LAB_D, value=64, key="d", bind="query-params")
        layers = st.select_slider(
            "Layers", lab.LAB_LAYERS, value=2, key="layers", bind="query-params"
        )
    with c4:
        batch = st.select_slider(
            "Batch B", lab.LAB_BATCH, value=32, key="batch", bind="query-params"
        )

    settings = lab.LabSettings(mode, int(k), int(slots), int(d_model), int(layers), int(batch))
    crossovers = support.analytic_sweep(settings)["crossovers"]
    st.plotly_chart(
        support.analytic_figure(settings, int(seq_len)),
        key="analytic",
        width="stretch",
    )
    st.caption(
        "Hover a point: its value splits into the terms of its formula (below), largest first. "
        "The grey dotted lines have slope 1 (∝ N) and slope 2 (∝ N²) and pass through the end "
        "of ELASTIC's and SASRec's curves: SASRec bends onto the N² line as N grows (its N²·d "
        "attention outgrows its N·d² projections), ELASTIC stays parallel to the N line (N·k)."
    )

    at_n = support.analytic_point(settings, int(seq_len))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric(
        "SASRec ÷ ELASTIC FLOPs at this N",
        f"{at_n['sasrec-sdpa']['flops'] / at_n['elastic']['flops']:.1f}×",
    )
    m2.metric(
        "Materialized ÷ ELASTIC memory",
        f"{at_n['sasrec-materialized']['bytes'] / at_n['elastic']['bytes']:.1f}×",
    )
    for col, quantity, label in ((m3, "flops", "FLOPs"), (m4, "bytes", "memory")):
        n_star, kind = crossovers[quantity]
        text = {
            "cross": f"N ≈ {n_star:,.0f}" if n_star else "",
            "always": "from the shortest N",
            "never": "not within N ≤ 65,536",
        }[kind]
        col.metric(f"ELASTIC cheaper in {label}", text)

    return settings


settings = analytic_lab()
with st.expander("The formulas (per layer)"):
    # time and memory on separate lines: one line of both was wider than the page and clipped
    st.latex(
        r"\begin{aligned}\text{SASRec: }& \underbrace{6BNd^2}_{QKV}"
        r" + \underbrace{4BN^2d}_{QK^\top,\ AV} + \underbrace{2BNd^2 + 16BNd^2}_{\text{proj, FFN}}"
        r"\\ \text{memory} &\propto B\,h\,N^2 \text{ (materialized)}\end{aligned}"
    )
    st.latex(
        r"\begin{aligned}\text{ELASTIC: }& 6BNd^2 + \underbrace{8Bkd^2}_{\text{dispatchers}}"
        r" + \underbrace{2BkNd}_{\text{stage-1 logits}} + 18BNd^2"
        r"\\ & + \underbrace{6BNkd + 4BNCd + 4BhNCk}_{\text{causal chunks, } C = \min(64, N)}"
        r" + \underbrace{8BNw_ld}_{\text{local window}}"
        r"\\ \text{memory} &\propto B\,N\,(d + hk + hC)\end{aligned}"
    )
    st.markdown(
        "FLOPs count matrix products only (2·m·n·p each), the way "
        "`torch.utils.flop_counter` counts them; a training step is forward + backward (3×). "
        "Memory is the predicted peak above what was live before the call: activations, plus "
        "gradients and parameters in training. The formulas live in `elastic/complexity.py`, "
        "next to the measurement they are checked against. SDPA is charged the full N × N "
        "square, as the counter does: its advantage is memory, not FLOPs. The hover on a curve "
        "gives these terms with their numbers, summed over the layers, beside the query "
        "network, the memory and the head or loss (`flops_terms`, `peak_bytes_terms`); they "
        "add up to the plotted value."
    )



def measured_section(settings: lab.LabSettings) -> None:
    """The button, the live progress and the measured curves (polled by a fragment)."""
    from elastic.device import describe_device, pick_device

    device = pick_device("auto")
    job = support.measurement_for(settings)
    running = job is not None and job.status in ("queued", "measuring")
    st.caption(
        f"Device: **{describe_device(device)}**. Each point is the median of 3 calls after a "
        "warm-up, with the peak memory of one more call. Points the memory guard predicts "
        "would not fit, or that would take too long, are skipped and say why."
    )
    if job is None or job.status in ("cancelled", "failed"):
        ns = lab.measurement_grid(device.type)
        if st.button(
            f"Measure N = {ns[0]}…{ns[-1]} with these settings",
            icon=":material/timer:",
            key="measure_start",
        ):
            support.measurement_for(settings, start=True)
            st.rerun()
        if job is not None and job.error:
            st.error(job.error)
        return

    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        status, records, error = job.snapshot()
        if status in ("queued", "measuring"):
            st.session_state["measure_was_running"] = True
            done = len(records)
            st.progress(
                done / job.total,
                text="Waiting for another measurement to finish…"
                if status == "queued"
                else f"Measuring: {done} of {job.total} points",
            )
            st.button("Stop measuring", on_click=job.cancel.set, key="measure_stop")
        elif st.session_state.pop("measure_was_running", False):
            st.rerun()
        if error:
            st.error(error)
        if not records:
            return
        ns, curves, skipped = lab.measured_curves(records)
        figure = lab.measured_figure(
            ns, curves, st.session_state.get("N", 1024), support.lab_frame()["x_range"]
        )
        if figure is None:
            st.caption("No point could be measured with these settings.")
        else:
            st.plotly_chart(figure, key="measured", width="stretch")
        if skipped:
            with st.expander(f"{len(skipped)} points skipped"):
                for reason in skipped:
                    st.markdown(f"- {reason[0].upper()}{reason[1:]}.")

    live()


st.subheader("Measured on this device")
measured_section(settings)
