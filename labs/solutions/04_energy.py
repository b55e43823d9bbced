"""Solutions to Lab 04's exercises (try them yourself first)."""

#: Section 1: on a machine whose ranks are CPU processes, "more": the all-reduce, each rank's
#: own overhead and ranks sharing cores are joules one process never spends.
my_guess = "more"


def joules_per_sample(run, config):
    """All member ranks' joules of each measured step, median over steps, over the batch."""
    from gpuviz.energy.attribution import joules
    from gpuviz.parallel.scaling import step_table

    steps = step_table(run)
    steps = steps[(steps["config"] == config) & ~steps["warmup"].astype(bool)]
    per_rank = joules(run, "step").merge(steps[["rank", "step", "batch"]], on=["rank", "step"])
    per_step = per_rank.groupby("step")["joules"].sum()
    return per_step.median() / steps["batch"].iloc[0]


def on_the_frontier(df):
    """Keep a configuration unless another is at least as fast and as cheap, and better in one."""
    keep = []
    for _, a in df.iterrows():
        beaten = any((b["step_s"] <= a["step_s"]) and (b["joules_per_sample"] <= a["joules_per_sample"])
                     and ((b["step_s"] < a["step_s"]) or (b["joules_per_sample"] < a["joules_per_sample"]))
                     for _, b in df.iterrows())
        if not beaten:
            keep.append(int(a["config"]))
    return keep


def waited_joules(run):
    """The idle category's joules, added up over every rank."""
    from gpuviz.energy.attribution import joules

    cat = joules(run, "category")
    return cat.loc[cat["category"] == "idle", "joules"].sum()


def grams_co2(joules, g_per_kwh):
    """kWh (1 kWh = 3.6e6 J) times the grid's grams per kWh."""
    return joules / 3.6e6 * g_per_kwh
