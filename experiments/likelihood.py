r"""Likelihoods (issue 17 §2): VAE and IWAE on dynamically binarised MNIST, test NLL by the
5,000-sample IWAE bound, beside Burda et al. (ICLR 2016)'s Table 1.

Rows: the committed experiments/configs/iwae_mnist.py (their one-stochastic-layer MLP, their
optimiser, batch and learning-rate schedule) trained with the VAE bound on k = 1, 5, 50 samples
and the IWAE bound on k = 5, 50 (at k = 1 the two are the same objective). Each run's
metrics.jsonl holds the NLL curve (100-sample bounds every pass); ``evaluate`` scores each
finished run's last checkpoint with the 5,000-sample bound (``genjax.cli.evaluate
--nll_samples=5000``, recorded in the run's metrics.jsonl, not repeated when there) and writes
the summary. The committed schedule is the first 4 of their 3,280 passes: the table says so.

  python -m experiments.likelihood train --root=RUNS
  python -m experiments.likelihood evaluate --root=RUNS   # -> experiments/results/likelihood_mnist.json
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

from experiments import sweep

CONFIG = "iwae_mnist"
FINAL_SAMPLES = 5000
# Burda et al. (2016), Table 1, MNIST, one stochastic layer: test NLL in nats (the 5,000-sample
# IWAE estimate) after their 3,280 passes, for (objective, k).
PAPER = {("elbo", 1): 86.76, ("elbo", 5): 86.47, ("elbo", 50): 86.35,
         ("iwae", 5): 85.54, ("iwae", 50): 84.78}


def rows() -> list[tuple[str, str, str, int]]:
  """(label, run, objective, k) per row."""
  return [(f"{'VAE' if objective == 'elbo' else 'IWAE'}, k = {k}",
           f"{'vae' if objective == 'elbo' else 'iwae'}_k{k}", objective, k)
          for objective, k in PAPER]


def overrides(objective: str, k: int) -> tuple[str, ...]:
  return (f"--config.method.objective={objective}", f"--config.method.num_samples={k}")


def _command(run: str, objective: str, k: int) -> str:
  return sweep.command(CONFIG, f"RUNS/{run}", overrides(objective, k))


def train(root: pathlib.Path, dataset: str) -> None:
  """Trains the runs that are not recorded yet (and resumes those under ``root``)."""
  del dataset  # MNIST only
  done = sweep.recorded_by_command("likelihood", "mnist", "test_nll")
  for _, run, objective, k in rows():
    if _command(run, objective, k) not in done or (root / run).exists():
      sweep.train(root, run, CONFIG, overrides(objective, k))


def _final_nll(workdir: pathlib.Path, steps: int) -> dict | None:
  """The run's 5,000-sample evaluation of its last step: found in its metrics.jsonl, or made
  (and recorded there) by genjax.cli.evaluate; None if the run has not finished."""
  lines = sweep.metric_lines(workdir)
  if not any(x.get("step") == steps and "nll" in x for x in lines):
    return None
  for x in lines:
    if x.get("step") == steps and x.get("nll_samples") == FINAL_SAMPLES:
      return x
  subprocess.run([sys.executable, "-m", "genjax.cli.evaluate", f"--workdir={workdir}",
                  f"--nll_samples={FINAL_SAMPLES}"], cwd=sweep.REPO, check=True)
  return _final_nll(workdir, steps)


def evaluate(root: pathlib.Path, dataset: str) -> dict:
  from experiments.configs import iwae_mnist  # pylint: disable=g-import-not-at-top
  steps = iwae_mnist.get_config().num_steps
  out, before = [], sweep.recorded_by_command("likelihood", "mnist", "test_nll")
  for label, run, objective, k in rows():
    command = _command(run, objective, k)
    if not (root / run).exists() and command in before:
      print(f"{label}: {root / run} is not here; its recorded row is kept", flush=True)
      out.append(before[command])
      continue
    final = _final_nll(root / run, steps)
    curve = [{"step": x["step"], "nll": x["nll"], "nll_samples": x["nll_samples"]}
             for x in sweep.metric_lines(root / run) if "nll" in x and x.get("source") == "train"]
    out.append({"row": label, "objective": objective, "k": k, "run": run,
                "command": command,
                "paper_nll": PAPER[(objective, k)],
                **({"missing": True} if final is None else {
                    "step": final["step"], "test_nll": final["nll"],
                    "test_nll_elbo": final["nll_elbo"], "nll_samples": final["nll_samples"]}),
                "curve": curve})
  return {"experiment": "likelihoods", "dataset": dataset,
          "metric": (f"test NLL in nats: minus the {FINAL_SAMPLES}-sample IWAE bound, the test "
                     f"split binarised once"),
          "steps": steps, "passes": steps // iwae_mnist.STEPS_PER_PASS,
          "paper": "Burda et al., Importance Weighted Autoencoders, ICLR 2016, Table 1 (MNIST, "
                   "one stochastic layer, 3,280 passes)",
          "evaluate": f"python -m genjax.cli.evaluate --workdir=RUNS/<run> "
                      f"--nll_samples={FINAL_SAMPLES}",
          "sweep": "python -m experiments.likelihood train --root=RUNS", "rows": out}


if __name__ == "__main__":
  sys.exit(sweep.main(sys.argv[1:], doc=__doc__, experiment="likelihood", train_dataset=train,
                      evaluate_dataset=evaluate, datasets=("mnist",)))
