"""Summary metrics and the HTML report of federated runs (one or several, compared)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from poisonlab.report import Report, integer_axis, pyplot, series_style

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

    from fedharness.config import ExperimentConfig

LIFESPAN_ASR = 0.5
# short report headings for attack_effects' keys (metrics.json keeps the long names)
EFFECT_COLUMNS = {
    "round": "round t", "main_accuracy_before": "MTA t−1", "main_accuracy_after": "MTA t",
    "attack_success_rate_after": "ASR t", "main_accuracy_drop": "MTA drop t",
    "main_accuracy_next_round": "MTA t+1", "attack_success_rate_next_round": "ASR t+1",
    "main_accuracy_drop_next_round": "MTA drop t+1",
}


def backdoor_lifespan(records: list[dict], threshold: float = LIFESPAN_ASR) -> int | None:
    """Rounds after the last attack round whose ASR stays ≥ ``threshold`` (None without an attack)."""
    attacked = [r["round"] for r in records if r["attacked"]]
    if not attacked:
        return None
    count = 0
    for r in records:
        if r["round"] <= attacked[-1]:
            continue
        if r["attack_success_rate"] < threshold:
            break
        count += 1
    return count


def attack_effects(records: list[dict]) -> list[dict]:
    """For each attack round t: MTA before (t−1), MTA/ASR after t, and one round later (t+1)."""
    by_round = {r["round"]: r for r in records}
    effects = []
    for r in records:
        if not r["attacked"]:
            continue
        t = r["round"]
        before, nxt = by_round.get(t - 1), by_round.get(t + 1)
        mta_before = before["main_accuracy"] if before else None
        effects.append({
            "round": t,
            "main_accuracy_before": mta_before,
            "main_accuracy_after": r["main_accuracy"],
            "attack_success_rate_after": r["attack_success_rate"],
            "main_accuracy_drop": mta_before - r["main_accuracy"] if before else None,
            "main_accuracy_next_round": nxt["main_accuracy"] if nxt else None,
            "attack_success_rate_next_round": nxt["attack_success_rate"] if nxt else None,
            "main_accuracy_drop_next_round": mta_before - nxt["main_accuracy"] if before and nxt else None,
        })
    return effects


def summarize(cfg: "ExperimentConfig", records: list[dict]) -> dict:
    """Final MTA/ASR, the attack rounds' effects, the clean ASR level and the backdoor lifespan."""
    by_round = {r["round"]: r for r in records}
    attacks = attack_effects(records)
    first_attack = attacks[0]["round"] if attacks else None
    before_attack = by_round.get(first_attack - 1) if first_attack else None
    last = records[-1] if records else {}
    return {
        "rounds": len(records),
        "final_main_accuracy": last.get("main_accuracy"),
        "final_attack_success_rate": last.get("attack_success_rate"),
        "max_attack_success_rate": max((r["attack_success_rate"] for r in records), default=None),
        "attack_success_rate_before_first_attack": before_attack["attack_success_rate"] if before_attack else None,
        "attacks": attacks,
        "backdoor_lifespan": backdoor_lifespan(records),
        "rejected_nonfinite": sum(r.get("rejected_nonfinite", 0) for r in records),
        "mean_round_time_s": sum(r["wall_time_s"] for r in records) / max(len(records), 1),
        "aggregator": cfg.aggregator.name,
        "attack": cfg.attack.name,
        "seed": cfg.seed,
    }


def curves_figure(runs: dict[str, list[dict]]) -> "plt.Figure":
    """MTA and ASR per round, one line per run (own marker and dash style, so overlapping runs stay
    visible); attack rounds marked."""
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(11, 3.6))
    for k, (name, records) in enumerate(runs.items()):
        rounds = [r["round"] for r in records]
        style: dict[str, Any] = {**series_style(k, len(rounds)), "label": name}
        ax1.plot(rounds, [r["main_accuracy"] for r in records], **style)
        ax2.plot(rounds, [r["attack_success_rate"] for r in records], **style)
        for r in records:
            if r["attacked"]:
                for ax in (ax1, ax2):
                    ax.axvline(r["round"], color="red", alpha=0.25, lw=3)
    ax1.set(title="Main-task accuracy", xlabel="round", ylim=(0, 1))
    ax2.set(title="Attack success rate (red: attack rounds)", xlabel="round", ylim=(0, 1.02))
    for ax in (ax1, ax2):
        integer_axis(ax)
        ax.legend(fontsize=8)
    return fig


def norms_figure(name: str, records: list[dict]) -> "plt.Figure":
    """Per-client update norms per round; malicious submissions in red."""
    fig, ax = pyplot().subplots(figsize=(11, 3.2))
    integer_axis(ax)
    points = [(r["round"], norm, client in r["malicious"])
              for r in records for client, norm in zip(r["sampled"], r["update_norms"])]
    for bad, style in ((False, dict(s=6, c="tab:blue", alpha=0.4)), (True, dict(s=18, c="red", alpha=0.9))):
        chosen = [(x, y) for x, y, b in points if b == bad]
        if chosen:
            ax.scatter(*zip(*chosen), **style)
    ax.set(title=f"{name}: client update norms ‖Lᵢ − G‖ (red: attacker)", xlabel="round", yscale="log")
    return fig


def add_runs(report: Report, runs: dict[str, list[dict]]) -> None:
    """Curves, norms and a per-run summary table for ``runs`` (name → round records)."""
    report.figure(curves_figure(runs), "Main-task accuracy and attack success rate per round.")
    for name, records in runs.items():
        report.figure(norms_figure(name, records))
    rows = []
    for name, records in runs.items():
        attacked = [r for r in records if r["attacked"]]
        rows.append({
            "run": name,
            "final MTA": records[-1]["main_accuracy"],
            "final ASR": records[-1]["attack_success_rate"],
            "max ASR": max(r["attack_success_rate"] for r in records),
            "attack rounds": ", ".join(str(r["round"]) for r in attacked) or "none",
            "lifespan (ASR≥0.5)": backdoor_lifespan(records),
        })
    report.table(rows, "Per-run summary")
    effects = [{"run": name, **{EFFECT_COLUMNS[k]: v for k, v in e.items()}}
               for name, records in runs.items() for e in attack_effects(records)]
    report.table(effects, "Attack rounds: MTA before (t−1), MTA and ASR after round t and after round t+1")


def write_report(path: Path, runs: dict[str, list[dict]], title: str) -> None:
    report = Report(title)
    add_runs(report, runs)
    report.save(path)
