"""Time a fresh ``make run`` (the full default pipeline) stage by stage, on an idle machine.

    python studies/default_run.py --out studies/results/default_run_tiny.json

1. Refuses to start while the machine is busy (1-minute load average above ``--max-load``, or another
   torch / snakemake / pytest process running): timings taken beside other jobs are not the figure.
2. ``--fresh`` (default): moves the profile's outputs (data, models, runs, results, reports, checkpoints,
   logs) to a trash folder first, so every stage is computed, as on a fresh clone.
3. Runs ``make run`` and reads:
   * wall time of the whole command, of the Snakemake pipeline and of the HTML report
     (``logs/make-run.times``, written by the Makefile);
   * every job's wall time from the Snakemake ``benchmark:`` files (``logs/<profile>/timings/``),
     summed per stage (prepare_data, base_model, evaluator, train, evaluate, report): the profile of
     where the time goes. Jobs run in parallel, so job seconds add up to more than the wall time;
   * the train and evaluate job seconds split by benchmark and method, and by task (``method_split``);
   * the train jobs whose outputs repeat another method's chain bit for bit (same md5 of every weight and
     metric file in the committed record, ``reports/record/<profile>.json``): what sharing those tasks
     would save (``repeated_train_jobs``; issue 17's "shared first tasks" lever).
Writes JSON (``--out``, every job's seconds under ``jobs``) and a Markdown table beside it (same name, ``.md``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from continual_diffusion.orchestration.record import cpu_generation, platform_info  # noqa: E402
from continual_diffusion.utils import layout  # noqa: E402
from continual_diffusion.utils.config import load as load_config  # noqa: E402

STAGE_OF_FOLDER = {"prepare_data": "prepare_data", "base_model": "base_model", "evaluator": "evaluator",
                   "train": "train", "evaluate": "evaluate", "report": "report"}
BUSY = ("pytest", "snakemake", "continual_diffusion", "dvc ")


def busy_processes() -> list[str]:
    me = os.getpid()
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    found = []
    for line in out:
        pid, _, args = line.strip().partition(" ")
        if int(pid) != me and any(b in args for b in BUSY) and "default_run.py" not in args:
            found.append(line.strip()[:120])
    return found


def job_times(bench_root: Path) -> dict[str, list[tuple[str, float]]]:
    """{stage: [(job, seconds)]} from Snakemake's benchmark TSV files."""
    stages: dict[str, list[tuple[str, float]]] = {}
    for tsv in sorted(bench_root.rglob("*.tsv")):
        rel = tsv.relative_to(bench_root)
        stage = STAGE_OF_FOLDER.get(rel.parts[0], "base_model" if rel.stem == "base_model" else rel.parts[0])
        with open(tsv) as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if rows:
            stages.setdefault(stage, []).append((rel.with_suffix("").as_posix(), float(rows[-1]["s"])))
    return stages


def method_split(stages: dict[str, list[tuple[str, float]]]) -> dict:
    """{stage: {benchmark/method: {jobs, job_seconds, first_task_s, last_task_s}}} for train and evaluate,
    from job names ``<stage>/<benchmark>/<method>/seed_<s>/task_<t>``."""
    split: dict = {}
    for stage in ("train", "evaluate"):
        rows: dict = {}
        for job, seconds in stages.get(stage, []):
            parts = job.split("/")
            if len(parts) != 5:
                continue
            entry = rows.setdefault(f"{parts[1]}/{parts[2]}", {"jobs": 0, "job_seconds": 0.0, "by_task": {}})
            entry["jobs"] += 1
            entry["job_seconds"] += seconds
            entry["by_task"][parts[4]] = entry["by_task"].get(parts[4], 0.0) + seconds
        for entry in rows.values():
            tasks = sorted(entry["by_task"])
            entry["first_task_s"], entry["last_task_s"] = entry["by_task"][tasks[0]], entry["by_task"][tasks[-1]]
        split[stage] = dict(sorted(rows.items()))
    return split


def repeated_train_jobs(record_path: Path, stages: dict[str, list[tuple[str, float]]]) -> dict:
    """Train jobs whose weight and metric files (every file but ``config.json``, which names the method, and
    ``log.json``, which names its loss terms) have the
    same md5 as those of another method's job for the same benchmark, seed and task, in the committed record:
    the work a shared job could have done once. ``{"jobs": [[job, same_as]], "job_seconds": s}``."""
    if not record_path.exists():
        return {"jobs": [], "job_seconds": 0.0, "record": None}
    files = json.loads(record_path.read_text()).get("files", {}).get("train", {})
    outputs: dict[str, dict[str, str]] = {}
    for path, digest in files.items():  # runs/<profile>/<benchmark>/<method>/seed_<s>/task_<t>/<file>
        parts = path.split("/")
        if len(parts) == 7 and parts[-1] not in ("config.json", "log.json"):
            outputs.setdefault("/".join(parts[2:6]), {})[parts[6]] = digest
    seconds = dict(stages.get("train", []))
    first_of: dict[tuple, str] = {}
    repeated = []
    for key in sorted(outputs):
        benchmark, method, seed, task = key.split("/")
        signature = (benchmark, seed, task, tuple(sorted(outputs[key].items())))
        if signature in first_of:
            repeated.append([f"train/{key}", f"train/{first_of[signature]}"])
        else:
            first_of[signature] = key
    return {"jobs": repeated, "job_seconds": sum(seconds.get(job, 0.0) for job, _ in repeated),
            "record": record_path.as_posix()}


def read_marks(path: Path) -> dict[str, float]:
    marks = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            marks[name] = float(value)
    return marks


def benchmark_split(jobs: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """{benchmark: {stage: job-seconds}} from ``result["jobs"]``. A job belongs to a benchmark when a folder of its
    name is that benchmark ("train/faces/clora/seed_0/task_01") or its last part names it ("prepare_data/pool_faces",
    "report/export_faces_clora_seed_0"); the rest (base model, summary, figures, ...) is "shared"."""
    benchmarks = {name.split("/")[1] for name in jobs.get("train", {}) if name.count("/") >= 1}
    split: dict[str, dict[str, float]] = {}
    for stage, named in jobs.items():
        for name, seconds in named.items():
            parts = name.split("/")
            words = set(parts[1:-1]) | set(parts[-1].split("_")) if len(parts) > 1 else set()
            owner = next((b for b in sorted(benchmarks) if b in words), "shared")
            split.setdefault(owner, {}).setdefault(stage, 0.0)
            split[owner][stage] += seconds
    return dict(sorted(split.items(), key=lambda kv: (kv[0] == "shared", kv[0])))


ORCHESTRATORS = {"snakemake": "snakemake", "warm-serve": "warm_server"}  # a cmdline word -> the CPU it is booked to


def _stat_fields(stat: str) -> list[str]:
    """The fields of /proc/<pid>/stat from field 3 on: those after the parenthesised command name, which may
    hold spaces."""
    return stat[stat.rindex(")") + 2:].split()


def process_cpu_seconds(stat: str, ticks_per_s: float) -> float:
    """User + system CPU seconds of one process itself (its children not included) from /proc/<pid>/stat:
    fields 14 and 15 (utime, stime)."""
    fields = _stat_fields(stat)
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def parent_pid(stat: str) -> str:
    """The parent's pid in /proc/<pid>/stat (field 4)."""
    return _stat_fields(stat)[1]


def orchestrator_of(cmdline: bytes) -> str | None:
    """Which orchestrating process a /proc/<pid>/cmdline is: the Snakemake process (not its jobs, which run
    ``python -m continual_diffusion``) or the warm worker's server; None for anything else."""
    words = [Path(w).name for w in cmdline.decode(errors="replace").split("\0")[:4] if w]
    if "continual_diffusion" in words and "warm-serve" in words:
        return ORCHESTRATORS["warm-serve"]
    if "continual_diffusion" not in words and "snakemake" in words:
        return ORCHESTRATORS["snakemake"]
    return None


class OrchestrationSampler(threading.Thread):
    """Samples, once a second, the CPU the Snakemake process and the warm server spend themselves (scheduling,
    DAG updates, output checks; the server's forks are jobs and not counted): the time that is neither a job
    nor idle. The last reading of each process before it exits is kept, so a short run may miss up to a second."""

    def __init__(self, interval_s: float = 1.0):
        super().__init__(daemon=True)
        self.interval_s, self.seen, self._stop_event = interval_s, {}, threading.Event()
        self.ticks = os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                role = orchestrator_of((entry / "cmdline").read_bytes())
                if not role:
                    continue
                stat = (entry / "stat").read_text()
                parent = Path("/proc") / parent_pid(stat) / "cmdline"
                if role == "warm_server" and orchestrator_of(parent.read_bytes()) == "warm_server":
                    continue  # a fork of the server keeps its command line: a job, not the server
                self.seen[int(entry.name)] = (role, process_cpu_seconds(stat, self.ticks))
            except (OSError, ValueError, IndexError):
                continue  # the process ended meanwhile

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join()
        totals = {role: 0.0 for role in ORCHESTRATORS.values()}
        for role, seconds in self.seen.values():
            totals[role] += seconds
        return {role: round(seconds, 1) for role, seconds in totals.items()}


def cpu_sentence(result: dict) -> str | None:
    """Where the CPU went besides the jobs, for runs that measured it."""
    if "cpu_s" not in result:
        return None
    cores = int(result.get("cores", 2))
    orchestration = result.get("orchestration_cpu_s", {})
    return (f"CPU: {result['cpu_s']:.0f} s in all processes, {100 * result['cpu_s'] / (cores * result['wall_s']):.0f}% "
            f"of {cores} cores over the wall time; Snakemake itself {orchestration.get('snakemake', 0):.0f} s, the warm "
            f"server itself {orchestration.get('warm_server', 0):.0f} s.")


def platform_sentence(platform: dict) -> str:
    """The machine a run was timed on, from the run's own record (never from the machine that renders it):
    CPU model, generation and ISA flags, CPU count, torch and the ISA caps the jobs ran under. Timings
    compare only within one such platform (README, "Status")."""
    cpu = platform["cpu"]
    generation = cpu_generation(cpu) or "generation not recorded"
    flags = " ".join(cpu.get("isa_flags", [])) or "none recorded"
    cpus = f", {platform['cpu_count']} CPUs" if "cpu_count" in platform else ""
    return (f"Platform: {cpu['model']} ({generation}; ISA flags {flags}){cpus}, torch {platform['torch']}, "
            f"cpu_isa {platform.get('cpu_isa', '?')}.")


def markdown(result: dict) -> str:
    lines = [f"<!-- {result['command']} ({result['date']}) -->",
             f"# Default run (`make run`, profile {result['profile']}), fresh outputs, idle machine",
             "",
             f"Wall time: **{result['wall_s']:.0f} s** ({result['wall_s'] / 60:.1f} min): pipeline "
             f"{result['pipeline_wall_s']:.0f} s, HTML report {result['html_report_wall_s']:.0f} s; exit status "
             f"{result['returncode']}. Load average before the start: {result['load_before']:.2f}.",
             platform_sentence(result["platform"]),
             *([cpu_sentence(result)] if cpu_sentence(result) else []),
             "",
             "| stage | jobs | job seconds | share | median job (s) | max job (s) |",
             "|---|---|---|---|---|---|"]
    total = sum(s["job_seconds"] for s in result["stages"].values()) or 1.0
    for name, s in result["stages"].items():
        lines.append(f"| {name} | {s['jobs']} | {s['job_seconds']:.0f} | {100 * s['job_seconds'] / total:.0f}% | "
                     f"{s['median_job_s']:.1f} | {s['max_job_s']:.1f} |")
    lines.append(f"| all | {sum(s['jobs'] for s in result['stages'].values())} | {total:.0f} | 100% | | |")
    lines += ["", "Job seconds are summed over jobs that run in parallel (Snakemake `benchmark:` files), so "
              "they exceed the wall time; their shares show where the time goes."]
    split = result.get("method_split", {})
    if split.get("train"):
        lines += ["", "## Train and evaluate jobs by benchmark and method", "",
                  "| benchmark/method | train job-s | train task 1 (s) | train task 10 (s) | evaluate job-s | "
                  "evaluate task 1 (s) | evaluate task 10 (s) |", "|---|---|---|---|---|---|---|"]
        for name, train in split["train"].items():
            evaluate = split.get("evaluate", {}).get(name, {"job_seconds": 0.0, "first_task_s": 0.0, "last_task_s": 0.0})
            lines.append(f"| {name} | {train['job_seconds']:.0f} | {train['first_task_s']:.1f} | "
                         f"{train['last_task_s']:.1f} | {evaluate['job_seconds']:.0f} | {evaluate['first_task_s']:.1f} | "
                         f"{evaluate['last_task_s']:.1f} |")
    by_benchmark = benchmark_split(result.get("jobs", {}))
    if set(by_benchmark) - {"shared"}:
        cores = int(result.get("cores", 2))
        stages = list(result["stages"])
        lines += ["", "## Job-seconds by benchmark", "",
                  "| benchmark | " + " | ".join(stages) + f" | all | all / {cores} cores (min) |",
                  "|---|" + "---|" * (len(stages) + 2)]
        for owner, seconds in by_benchmark.items():
            total_s = sum(seconds.values())
            lines.append(f"| {owner} | " + " | ".join(f"{seconds.get(stage, 0.0):.0f}" for stage in stages)
                         + f" | {total_s:.0f} | {total_s / cores / 60:.1f} |")
        lines += ["", f"The last column is a floor: the job-seconds of that benchmark spread over {cores} cores "
                  "without idle time (what a run of that benchmark alone could take at best)."]
    repeated = result.get("repeated_train_jobs")
    if repeated and repeated.get("record"):
        same = ", ".join(f"{a.split('/', 1)[1]} = {b.split('/')[2]}" for a, b in repeated["jobs"]) or "none"
        lines += ["", f"Train jobs whose outputs repeat another method's job bit for bit in the record "
                  f"(`{repeated['record']}`): {len(repeated['jobs'])}, {repeated['job_seconds']:.0f} job-s "
                  f"({same})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="tiny")
    p.add_argument("--cores", default="2", help="make run CORES= (default 2: the project machine)")
    p.add_argument("--keep", action="store_true", help="do not move existing outputs away (not a fresh run)")
    p.add_argument("--max-load", type=float, default=0.5, help="refuse to start above this 1-minute load average")
    p.add_argument("--force", action="store_true", help="start even on a busy machine (the figure is then not valid)")
    p.add_argument("--out", type=Path, required=True, help="JSON result; a .md table is written beside it")
    p.add_argument("--render", action="store_true",
                   help="run nothing: write the .md again from the JSON already at --out (after a change of the tables)")
    args = p.parse_args()
    if args.render:
        if not args.out.exists():
            sys.exit(f"default_run.py: {args.out}: not found (--render re-renders a saved result)")
        try:
            saved = json.loads(args.out.read_text())
        except json.JSONDecodeError as error:
            sys.exit(f"default_run.py: {args.out}: not a JSON result ({error})")
        args.out.with_suffix(".md").write_text(markdown(saved))
        return

    load = os.getloadavg()[0]
    busy = busy_processes()
    if (load > args.max_load or busy) and not args.force:
        sys.exit(f"default_run.py: machine busy (load {load:.2f}; {busy[:3]}): timings would not be valid")
    os.chdir(REPO)
    if not args.keep:
        trash = Path(f"/tmp/default_run_trash_{int(time.time())}")
        folders = [str(layout.profile_root(top, args.profile))
                   for top in ("data", "models", "runs", "results", "reports", "checkpoints", "logs")]
        for folder in (*folders, "reports/report.html"):
            if Path(folder).exists():
                (trash / folder).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(folder, trash / folder)
    command = f"make run CORES={args.cores}"
    sampler = OrchestrationSampler()
    sampler.start()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    rc = subprocess.run(command.split(), env=dict(os.environ, CORES=args.cores)).returncode
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    orchestration = sampler.stop()
    marks = read_marks(Path("logs/make-run.times"))
    stages = {}
    times = job_times(layout.logs_dir(args.profile, "timings"))
    for name, jobs in sorted(times.items(),
                             key=lambda kv: list(STAGE_OF_FOLDER).index(kv[0]) if kv[0] in STAGE_OF_FOLDER else 99):
        seconds = sorted(s for _, s in jobs)
        stages[name] = {"jobs": len(jobs), "job_seconds": sum(seconds), "median_job_s": seconds[len(seconds) // 2],
                        "max_job_s": seconds[-1]}
    result = {
        "command": f"python studies/default_run.py {' '.join(sys.argv[1:])}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "profile": args.profile, "cores": int(args.cores), "fresh": not args.keep, "returncode": rc,
        "load_before": load,
        "wall_s": wall,
        "cpu_s": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
        "orchestration_cpu_s": orchestration,
        "pipeline_wall_s": marks.get("pipeline_done", 0) - marks.get("start", 0),
        "html_report_wall_s": marks.get("html_report_done", 0) - marks.get("pipeline_done", 0),
        "stages": stages,
        "method_split": method_split(times),
        "repeated_train_jobs": repeated_train_jobs(Path(f"reports/record/{args.profile}.json"), times),
        "jobs": {stage: dict(jobs) for stage, jobs in times.items()},
        "platform": {**platform_info(load_config([Path("params.yaml")])["cpu_isa"]), "cpu_count": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    sys.stdout.write(markdown(result))
    sys.exit(rc)


if __name__ == "__main__":
    main()
