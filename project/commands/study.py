"""The study of ``python -m project tune`` (tune.py): trials run as ordinary fits, the trials
cut short run again, and the results written.

A trial is ``fit`` through the same CLI in this process (no second training path), with the
sampled knobs as flags after the user's, Optuna's Lightning pruning callback added to the
Trainer, no test (tuning must not see it), and its output in ``trial_N/fit.log``. Its value is
the best ``val/f1`` of its metrics.json. A trial that fit refuses in one line (a sampled learning
rate whose loss diverges) is failed with that line and the study goes on, unless no trial of
the study has completed yet: then the data or the flags are at fault, and tune stops with it.
"""

import contextlib
import csv
import json
import logging
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path

import matplotlib
import optuna
import yaml
from lightning.pytorch.utilities.exceptions import SIGTERMException
from optuna.pruners import MedianPruner, NopPruner
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as plots
from optuna_integration import PyTorchLightningPruningCallback

from project import tags
from project.atomic import atomic_write
from project.errors import Stopped, UserError, user_line
from project.training.fit import run_fit

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
FIX = "choose another --trainer.default_root_dir or --study_name"
SURPLUS = "not run: the study had its trials"  # a trial over --n_trials, left out of the results


class TrialFailed(Exception):
    """A trial that fit refused in one line: recorded as failed, the study goes on."""


def suggest(trial: optuna.Trial, knob: str, spec: dict) -> object:
    if "choices" in spec:
        return trial.suggest_categorical(knob, spec["choices"])
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if isinstance(low, int) and isinstance(high, int) and isinstance(spec.get("step", 1), int):
        return trial.suggest_int(knob, low, high, step=spec.get("step", 1), log=log)
    return trial.suggest_float(knob, float(low), float(high), step=spec.get("step"), log=log)


def flag(knob: str, value: object) -> str:
    return f"--{knob}={value if isinstance(value, str) else json.dumps(value)}"


class Objective:
    def __init__(self, fit_args: list[str], space: dict, out: Path, pruning: bool, wanted: int) -> None:
        self.fit_args, self.space, self.out, self.pruning, self.wanted = fit_args, space, out, pruning, wanted

    def __call__(self, trial: optuna.Trial) -> float:
        # Another process may have started the last trial wanted since this one was decided on:
        # of two trials started together the lower number runs (numbers follow creation order).
        ahead = [t for t in trial.study.get_trials(deepcopy=False) if t.state in FINISHED
                 or (t.state == TrialState.RUNNING and t.number < trial.number)]
        if len(ahead) >= self.wanted:
            trial.set_user_attr("error", SURPLUS)
            trial.study.stop()
            raise TrialFailed(SURPLUS)
        params = {knob: suggest(trial, knob, spec) for knob, spec in self.space.items()}
        name = f"trial_{trial.number}"
        run = self.out / name
        shutil.rmtree(run, ignore_errors=True)  # a trial of a deleted study of this name: numbers restart at 0
        run.mkdir(parents=True)
        trial.set_user_attr("run", str(run))
        args = [*self.fit_args, *(flag(k, v) for k, v in params.items()), "--test_after_fit=false"]
        callbacks = [PyTorchLightningPruningCallback(trial, monitor=tags.VAL_F1)] if self.pruning else []
        # Lightning's info lines ("Seed set to 42", the devices) would reach the terminal, not the log.
        quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
        levels, error = [log.level for log in quiet], None
        with (run / "fit.log").open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            for log in quiet:
                log.setLevel(logging.WARNING)
            try:
                run_fit(args, callbacks, run_dir=run)
            except (Stopped, KeyboardInterrupt, SIGTERMException) as stop:  # failed, and run again by the next tune
                trial.study.tell(trial, state=TrialState.FAIL)  # Optuna would leave it running
                signum = getattr(stop, "signum", signal.SIGTERM if isinstance(stop, SIGTERMException) else signal.SIGINT)
                print(f"stopped by {signal.Signals(signum).name}", flush=True)  # in its fit.log
                print(f"tune: trial {trial.number} stopped (exit code {128 + signum}); run the same tune again: it "
                      f"runs that trial again, then goes on", file=sys.__stderr__, flush=True)
                sys.exit(128 + signum)
            except Exception as refused:  # a refusal of this trial's flags: failed with its line
                if (error := user_line(refused)) is None:
                    raise
                print(f"error: {error}", flush=True)  # in its fit.log, as a fit of its own prints it
            finally:
                for log, level in zip(quiet, levels):
                    log.setLevel(level)
        if error is None:
            best = json.loads((run / "metrics.json").read_text()).get("best") or {}
            if best.get(tags.VAL_F1) is not None:
                return best[tags.VAL_F1]
            error = "no validation ran (shorter than an epoch?); fix: more --trainer.max_epochs or --trainer.max_steps"
        trial.set_user_attr("error", error)
        if not trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):  # the data or flags, not the knobs
            raise UserError(f"tune: trial {trial.number} ({run / 'fit.log'}): {error}")
        raise TrialFailed(error)


def retry_interrupted(study: optuna.Study) -> None:
    """Trials cut short (failed without an error of their own: Ctrl-C, SIGTERM, a process gone
    quiet past the heartbeat grace) are queued again with the same knobs, once each."""
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if (trial.state == TrialState.FAIL and "error" not in trial.user_attrs and "retry_of" not in trial.user_attrs
                and trial.number not in retried):
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def seconds(trial: FrozenTrial) -> float | None:
    return (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None


def outcome(trial: FrozenTrial, retried_as: int | None = None) -> str:
    if trial.state == TrialState.PRUNED:
        return f"pruned after epoch {max(trial.intermediate_values, default=0)}"
    if trial.state == TrialState.FAIL and "error" in trial.user_attrs:
        return trial.user_attrs["error"]
    if trial.state == TrialState.FAIL:  # stopped, or its process gone (retry_interrupted)
        if retried_as is not None:
            return f"cut short: its knobs ran again as trial {retried_as}"
        if "retry_of" in trial.user_attrs:
            return "cut short again (a rerun of trial {}): not run a third time".format(trial.user_attrs["retry_of"])
        return "cut short: a later tune with trials left to run runs its knobs again"
    return "" if trial.value is None else f"val/f1 {trial.value:.4f}"


def report_line(study: optuna.Study, trial: FrozenTrial) -> None:
    if trial.user_attrs.get("error") == SURPLUS:
        return
    took = seconds(trial)
    print(f"trial {trial.number}: {trial.state.name.lower()}, {outcome(trial)}"
          f"{f', {took:.0f} s' if took is not None else ''}; " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float)
                                                                            else f"{k}={v}" for k, v in trial.params.items()),
          flush=True)


def tune(fit_args: list[str], space: dict, study_name: str, storage: optuna.storages.RDBStorage, out: Path,
         config: dict) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial of our own instead
    pruner = (MedianPruner(n_startup_trials=config["pruner_startup_trials"], n_warmup_steps=config["pruner_warmup_epochs"])
              if config["pruning"] else NopPruner())
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", pruner=pruner,
                                load_if_exists=True)
    retry_interrupted(study)
    wanted, started = config["n_trials"], time.monotonic()
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    running = still_running(study, config["heartbeat_grace_s"])
    print(f"study {study_name} ({storage.url}): {done} of {wanted} trials finished" + (f", {running}" if running else "")
          + f"; runs in {out}/trial_N", flush=True)
    if done < wanted:
        # Counting the running trials of every process, so that together they stop at n_trials.
        stop = MaxTrialsCallback(wanted, states=(*FINISHED, TrialState.RUNNING))
        study.optimize(Objective(fit_args, space, out, config["pruning"], wanted), timeout=config["timeout"],
                       callbacks=[report_line, stop], catch=(TrialFailed,), gc_after_trial=True)
    write_results(study, out)
    print(f"tune: {time.monotonic() - started:.0f} s", flush=True)
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    running = still_running(study, config["heartbeat_grace_s"])
    if finished < wanted and running:  # stopped short, counting trials that may be dead (row 70, 2026-12-05 trial)
        print(f"tune: {finished} of {wanted} trials finished; {running}; run the same tune again after that to reach "
              f"{wanted}", flush=True)


def still_running(study: optuna.Study, grace_s: int) -> str:
    """The trials the study counts as running, in words ("" for none): another process's, or a
    killed one's until its heartbeat grace has passed."""
    running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    return (f"trial{'s' * (len(running) > 1)} {', '.join(map(str, running))} still count{'s' * (len(running) == 1)} "
            f"as running (another tune process, or one killed: marked failed {grace_s} s after its last heartbeat, "
            f"then run again)") if running else ""


def write_results(study: optuna.Study, out: Path) -> None:
    """The trials table and the best trial, printed; trials.csv, best.yaml and the plots."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("error") != SURPLUS]
    knobs = list(dict.fromkeys(k for t in trials for k in t.params))
    reruns = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    rows = [{"trial": t.number, "state": t.state.name.lower(), "val/f1": t.value, "seconds": seconds(t),
             **{k: t.params.get(k) for k in knobs},
             "note": outcome(t, reruns.get(t.number)) if t.state != TrialState.COMPLETE else "",
             "run": t.user_attrs.get("run")} for t in trials]
    short = {k: k.rsplit(".", 1)[-1] for k in knobs}
    cells = [[str(r["trial"]), r["state"], "" if r["val/f1"] is None else f"{r['val/f1']:.4f}",
              "" if r["seconds"] is None else f"{r['seconds']:.0f}",
              *("" if r[k] is None else f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in knobs)] for r in rows]
    header = ["trial", "state", "val/f1", "s", *short.values()]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    print("\n" + "  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "trials.csv", "x", fix=FIX) as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        print("\nno trial has completed yet: no best.yaml")
        return
    best = study.best_trial
    config = yaml.safe_load((Path(best.user_attrs["run"]) / "config.yaml").read_text())
    config["trainer"]["logger"] = None  # a run of its own under lightning_logs/, as fit makes by default
    config["test_after_fit"], config["ckpt_path"] = True, None
    with atomic_write(out / "best.yaml", "x", fix=FIX) as f:
        f.write(f"# Trial {best.number} of study {study.study_name}, val/f1 {best.value:.4f}: the whole config of its fit.\n"
                f"#   python -m project fit --config {out / 'best.yaml'}\n")
        yaml.safe_dump(config, f, sort_keys=False)
    print(f"\nbest: trial {best.number}, val/f1 {best.value:.4f} (" + ", ".join(f"{k}={v}" for k, v in best.params.items())
          + f")\n{out / 'best.yaml'}: python -m project fit --config {out / 'best.yaml'}")
    write_plots(study, out, len(complete))


TRUSTED_IMPORTANCES = 10  # complete trials before the importance plot is more than a rough guide


def write_plots(study: optuna.Study, out: Path, complete: int) -> None:
    matplotlib.use("Agg")
    with warnings.catch_warnings():  # Optuna calls its matplotlib plots experimental
        warnings.simplefilter("ignore")
        figures = {"optimization_history.png": plots.plot_optimization_history}
        if complete >= 2:  # importances compare trials
            figures["param_importances.png"] = plots.plot_param_importances
        for name, plot in figures.items():
            axes = plot(study)
            if name == "param_importances.png" and complete < TRUSTED_IMPORTANCES:
                # fANOVA over a handful of trials ranks knobs by noise as readily as by effect.
                caveat = f"from {complete} complete trials: a rough guide below {TRUSTED_IMPORTANCES}"
                axes.set_title(f"{axes.get_title()}\n({caveat})")
                print(f"tune: {name} {caveat}", flush=True)
            with atomic_write(out / name, "xb", fix=FIX) as f:
                axes.figure.savefig(f, format="png", dpi=100, bbox_inches="tight")
            matplotlib.pyplot.close(axes.figure)
