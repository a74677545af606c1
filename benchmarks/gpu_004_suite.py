"""Report 004's whole suite (Exp 1–11, both variants) through the real scheduler, several runs per GPU.

    python benchmarks/gpu_004_suite.py [--gpus 0,1] [--pack 8] [--variants published,corrected] [--db /tmp/suite.db]
        [--cascade MODEL.gguf --cascade-data ALPACA.json [--cascade-set recipe=001,stages=2]] [--cascade-alone]

Queues what ``hrm reproduce 004`` queues, runs ``Scheduler`` with ``--gpus G --pack N`` (N runs
share each GPU, each a worker subprocess), samples every GPU's utilisation with ``nvidia-smi``
while it runs, and prints the wall time of the whole suite, each run's time and headline, and how
many published numbers land within tolerance.

``--cascade`` also queues one SmolLM2 ``cascade`` run (the real model, ahead of the char runs) so that
it trains next to them on the same GPUs; ``--cascade-alone`` first runs that cascade by itself on the
first GPU, on its own registry, as the baseline of how much the char runs slow it down.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import api  # noqa: E402
from core.registry import open_database, store  # noqa: E402
from core.reproduce import compare_report, plan_reproduce, queue_reproduce  # noqa: E402
from core.scheduler import Scheduler, Slots, detect_gpus  # noqa: E402


class UtilisationSampler(threading.Thread):
    """Every GPU's utilisation (%) and memory, sampled once a second by ``nvidia-smi`` while the suite runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self._done = threading.Event()

    def run(self) -> None:
        if not shutil.which("nvidia-smi"):
            return
        while not self._done.wait(1.0):
            out = subprocess.run(["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                index, util, mem = (part.strip() for part in line.split(","))
                self.samples.setdefault(index, []).append((float(util), float(mem)))

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    def summary(self) -> str:
        if not self.samples:
            return "GPU utilisation: no nvidia-smi"
        parts = []
        for index, rows in sorted(self.samples.items()):
            utils = [u for u, _ in rows]
            parts.append(f"GPU {index}: mean {sum(utils) / len(utils):.0f} % busy over {len(rows)} s, "
                         f"peak memory {max(m for _, m in rows):.0f} MiB")
        return "GPU utilisation: " + "; ".join(parts)


def cascade_values(args: argparse.Namespace) -> dict[str, object]:
    """The cascade run's config: the real model and Alpaca file, plus ``--cascade-set k=v,...``."""
    values: dict[str, object] = {"model": args.cascade, "data_file": args.cascade_data, "device": "cuda"}
    for item in filter(None, (args.cascade_set or "").split(",")):
        key, _, value = item.partition("=")
        values[key.strip().replace("-", "_")] = value.strip()
    return values


def cascade_line(db, run_id: int) -> str:
    """One line on the cascade run: status, wall, headline and the summary figures its worker logged."""
    run = store.get_run(db, run_id)
    seconds = (run.finished_at or 0) - (run.started_at or 0)
    wanted = ("best_val_ppl", "extract_tokens_per_s", "train_tokens_per_s", "threshold")
    latest = {m["key"]: m["last"] for m in store.latest_metrics(db, [run_id]).get(run_id, [])
              if m["key"] in wanted and not m["stage"]}  # the run's summary, not a stage's
    figures = ", ".join(f"{k} {v:,.2f}" for k, v in sorted(latest.items()) if isinstance(v, (int, float)))
    return (f"cascade run {run.id}: {run.status} in {seconds:.1f} s on GPU {run.gpu}; headline "
            f"{run.headline_value}; {figures}" + (f"; error: {run.error}" if run.error else ""))


def run_cascade_alone(args: argparse.Namespace, gpus: tuple[str, ...]) -> None:
    """The baseline: the same cascade run with the GPU to itself."""
    path = Path(args.db).with_name(Path(args.db).stem + "-cascade-alone.db")
    path.unlink(missing_ok=True)
    db = open_database(str(path))
    run = api.submit(db, "cascade", cascade_values(args))
    start = time.perf_counter()
    Scheduler(db, Slots(gpus[:1], 1, 1), poll=0.2, once=True).run()
    print(f"cascade alone on GPU {gpus[0] if gpus else 'cpu'}: {time.perf_counter() - start:.1f} s wall\n"
          f"{cascade_line(db, run.id)}\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/suite004.db")
    parser.add_argument("--pack", type=int, default=8, help="runs sharing one GPU")
    parser.add_argument("--variants", default="published,corrected")
    parser.add_argument("--only", default=None, help="experiment ids, e.g. 5-11")
    parser.add_argument("--gpus", default=None, help="GPU indices, e.g. 0,1 (default: the first visible GPU)")
    parser.add_argument("--cascade", default=None, help="a SmolLM2 GGUF file or model dir: queue one cascade run too")
    parser.add_argument("--cascade-data", default=None, help="the Alpaca JSON file of the cascade run")
    parser.add_argument("--cascade-set", default=None, help="more cascade settings, e.g. recipe=001,stages=2")
    parser.add_argument("--cascade-alone", action="store_true", help="first run the cascade alone on one GPU")
    args = parser.parse_args()
    gpus = tuple(g for g in args.gpus.split(",") if g) if args.gpus is not None else detect_gpus()[:1]
    if args.cascade and args.cascade_alone:
        run_cascade_alone(args, gpus)
    Path(args.db).unlink(missing_ok=True)
    db = open_database(args.db)
    cascade = api.submit(db, "cascade", cascade_values(args), priority=10) if args.cascade else None
    for variant in args.variants.split(","):
        items = plan_reproduce("004", variant, [args.only] if args.only else None)
        queue_reproduce(db, "004", items, variant)
    queued = store.list_runs(db)
    slots = Slots(gpus, args.pack, args.pack * len(gpus) if gpus else 2)
    print(f"{len(queued)} runs queued; scheduler on {slots.describe()}", flush=True)
    sampler = UtilisationSampler()
    sampler.start()
    start = time.perf_counter()
    Scheduler(db, slots, poll=0.2, once=True).run()
    wall = time.perf_counter() - start
    sampler.stop()
    print(sampler.summary())
    runs = sorted(store.list_runs(db), key=lambda r: r.id)
    print(f"\nwhole suite: {wall:.1f} s wall for {len(runs)} runs "
          f"(sum of run times {sum((r.finished_at or 0) - (r.started_at or 0) for r in runs):.1f} s)\n")
    print("| id | experiment | variant | config | status | seconds | headline |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        record = api.run_record(run)
        choice = {k: v for k, v in record["config"].items() if k in ("method", "model", "loss", "update", "phase")}
        seconds = (run.finished_at or 0) - (run.started_at or 0)
        print(f"| {run.id} | {run.experiment} | {run.variant} | {choice} | {run.status} | {seconds:.1f} | "
              f"{run.headline_value if run.headline_value is None else round(run.headline_value, 3)} |")
        if run.status != "completed":
            print(f"|  | error: {run.error} |")
    if cascade is not None:
        print("\n" + cascade_line(db, cascade.id))
    for variant in args.variants.split(","):
        result = compare_report(db, "004", variant=variant)
        print(f"\n004 {variant}: {result.summary}")


if __name__ == "__main__":
    main()
