"""``poisonlab demo --tiny`` end to end through the CLI: every step's section in report.html, its
summary in metrics.json, the advertised artefacts, and no path that points into the staging folder."""

from __future__ import annotations

import json

import pytest

from poisonlab.demo import STEPS


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, data_dir):
    """Run the whole tiny demo once: (exit code, captured output, run directory)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("demo") / "demo"
    proc = subprocess.run([sys.executable, "-m", "poisonlab", "demo", "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    return proc, out


def test_demo_exits_0_with_a_heading_and_a_summary_line_per_step(demo_run):
    """Two lanes: each step's heading when it starts, its summary line (after its heading) when it ends, and
    nothing else on the terminal but blank lines and the closing line; the steps' own output is in their logs."""
    proc, out = demo_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    starts = {name: next(i for i, line in enumerate(lines) if line.startswith("[") and heading in line)
              for name, (_, heading) in STEPS.items()}
    ends = {name: next(i for i, line in enumerate(lines) if line.startswith(f"  {name}: ")) for name in STEPS}
    assert all(starts[name] < ends[name] for name in STEPS)
    assert sorted(lines[i].split("]")[0] for i in starts.values()) == [f"[{k}/{len(STEPS)}" for k in range(1, len(STEPS) + 1)]
    assert len([line for line in lines if line.strip()]) == 2 * len(STEPS) + 1
    assert lines[-1].startswith(f"demo report: {out / 'report.html'}")
    for name in STEPS:
        assert (out / "logs" / f"{name}.log").is_file()


def test_report_has_a_summary_and_every_section(demo_run):
    _, out = demo_run
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.index("<h2>Summary</h2>") < min(page.index(f'<section id="{name}">') for name in STEPS)
    for name in STEPS:
        section = page.split(f'<section id="{name}">', 1)[1].split("</section>", 1)[0]
        assert "<h2>" in section and "<table" in section and "<img" in section, name
    assert "<td>None</td>" not in page and "<td>nan</td>" not in page, "missing values are shown as –"


def test_metrics_hold_each_steps_headline_numbers(demo_run):
    _, out = demo_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["size"] == "tiny" and set(STEPS) <= set(metrics)
    for run in ("fed-clean", "fed-replacement"):
        assert 0 <= metrics["fed"][run]["final_main_accuracy"] <= 1
    assert metrics["fed"]["fed-replacement"]["attacks"], "the attacked run records its attack round"
    assert set(metrics["nlp"]["effectiveness"]) == {"clean", "concealed", "random"}
    assert set(metrics["nlp"]["concealment"]) == {"concealed", "random", "near-spelling"}
    assert {"retrain", "noop"} <= set(metrics["unlearn"])
    assert all(v["verdict"] in {"HONORED", "NOT HONORED", "INCONCLUSIVE"} for v in metrics["unlearn"].values())
    assert 0 <= metrics["t2i"]["attack_success_rate"] <= 1


@pytest.mark.parametrize("artefact", [
    "fed-clean/config.yaml", "fed-clean/rounds.jsonl", "fed-clean/metrics.json", "fed-clean/report.html",
    "fed-replacement/metrics.json", "fed-replacement/report.html",
    "nlp-concealed/metrics.json", "nlp-concealed/report.html", "nlp-concealed/poisons/concealed",
    "nlp-concealed/poisons/near-spelling/README.md",
    "unlearn-lsb/metrics.json", "unlearn-lsb/report.html", "unlearn-lsb/verdict.json",
    "t2i-pixel/metrics.json", "t2i-pixel/report.html", "t2i-pixel/backdoor.json",
])
def test_advertised_artefacts_exist(demo_run, artefact):
    _, out = demo_run
    assert (out / artefact).exists()


def test_t2i_step_saves_its_trained_weights(demo_run):
    """LoRA mode saves ``pytorch_lora_weights.safetensors``; full-UNet mode (the demo's, see demo_t2i) ``unet/``."""
    _, out = demo_run
    mode = json.loads((out / "t2i-pixel" / "backdoor.json").read_text()).get("mode")
    weights = "unet/config.json" if mode == "full" else "pytorch_lora_weights.safetensors"
    assert (out / "t2i-pixel" / weights).exists(), f"mode {mode}: {weights} missing"


def test_artefacts_load_with_their_owners_libraries(demo_run):
    """Poison sets through the lab's checked loader (schema, checksum, declared constraints) and as HF
    datasets; the LoRA through safetensors; the unlearning verdicts as JSON."""
    from datasets import load_from_disk
    from safetensors.torch import load_file

    from nlp_poison import dataset_card

    _, out = demo_run
    for name in ("concealed", "random", "near-spelling"):
        folder = out / "nlp-concealed" / "poisons" / name
        ps, verified = dataset_card.load(folder)
        assert verified and len(ps.poisons) == len(load_from_disk(str(folder / "dataset"))) > 0
        assert (ps.constraints is None) == (name == "near-spelling")
    assert load_file(str(out / "t2i-pixel" / "pytorch_lora_weights.safetensors"))
    assert set(json.loads((out / "unlearn-lsb" / "verdict.json").read_text())) == {"retrain", "noop"}


def test_no_artefact_names_the_staging_folder(demo_run):
    _, out = demo_run
    stale = [str(p.relative_to(out)) for p in out.rglob("*")
             if p.suffix in {".json", ".jsonl", ".yaml", ".md", ".html"} and "demo.partial" in p.read_text(encoding="utf-8")]
    assert stale == []


def test_one_lane_gives_the_numbers_of_two_and_config_yaml_reruns_it(demo_run, tmp_path, data_dir):
    """Scheduling changes nothing: the steps run one after another (``--lanes 1``) give the metrics they gave
    beside others in the two-lane fixture; the run's config.yaml reruns it with the same metrics."""
    import subprocess
    import sys

    import yaml

    def demo(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "poisonlab", "demo", *args], capture_output=True, text=True, timeout=600)

    first = demo("--tiny", "--only", "nlp", "--only", "unlearn", "--lanes", "1", "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr[-2000:]
    assert yaml.safe_load((tmp_path / "a" / "config.yaml").read_text()) == {"size": "tiny", "seed": 0, "steps": ["nlp", "unlearn"], "lanes": 1}
    again = demo("--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "b"))
    assert again.returncode == 0, again.stderr[-2000:]
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("a", "b")]
    assert metrics[0] == metrics[1] and set(metrics[0]) == {"size", "seed", "nlp", "unlearn"}
    both = json.loads((demo_run[1] / "metrics.json").read_text())
    assert {k: both[k] for k in ("nlp", "unlearn")} == {k: metrics[0][k] for k in ("nlp", "unlearn")}
