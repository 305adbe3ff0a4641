"""Every command the README and docs/ document works as written (issue 17), each in a form that cannot take
long: a command or flag that no longer exists, or a `--config` syntax that is rejected, fails here. And every
relative link of those pages points to a file that exists (issue 19).

Taken from README.md and docs/*.md: the lines of ```bash blocks, the inline code spans that start with `snakemake`,
`dvc`, `cdiff` or `make`, and every `--config ...` fragment. How each is checked (zero exit status):

* `snakemake ...`: the same with `-n`, in a copy of the workflow whose params.yaml selects the `smoke`
  profile (a command that names a profile, e.g. `--config profile=paper_faces`, dry-runs that one:
  its DAG needs no data); `<stage>` stands for every DVC stage.
* `--config ...` (a fragment, unless part of a documented snakemake command): `snakemake -n <fragment>`.
* `dvc ...`: in a committed copy whose stage outputs are empty folders; `dvc repro` as `--dry`,
  `dvc exp run` as `--queue` (queued, not run); each `-S key=value` is also validated like `cdiff --set`.
* `cdiff ...`: as written when it takes seconds (`--help`, `dvc-yaml`, `dvc-record`); any other command
  line is parsed by the real parser and `cdiff <subcommand> --help` runs; `<stage>`: every subcommand
  the rules call.
* `make <target>`: `make -n <target>` in the repository.

Commands that cannot be run here are listed below with the reason.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest

from continual_diffusion.cli import build_parser
from continual_diffusion.orchestration import pipeline
from continual_diffusion.utils import config
from tests.helpers import REPO, run, workflow_copy

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]  # every page whose commands and links are checked
TOOLS = ("snakemake", "dvc", "cdiff", "make")

# Documented, but not run (the reason); every other documented command must run.
NOT_RUN = {
    "snakemake --report reports/report.html":
        "needs a finished run's outputs (test_e2e.py::test_snakemake_report_builds_the_html_report runs it)",
    "dvc exp run -S key=value": "a placeholder (`dvc exp run -S profile=paper_landmarks` runs)",
    "--config profile=...": "a placeholder (`--config profile=paper_faces` runs)",
    "--config resources...": "a placeholder (docs/gpu_and_cluster.md: where `--config` overrides of resources rank)",
    "cdiff --set profile=...": "a placeholder (tests/test_cli.py runs `cdiff config ... --set profile=smoke`)",
}
# Documented commands of which only `--help` runs (the reason).
HELP_ONLY = {
    "dvc pull": "needs a DVC remote",
    "dvc checkout": "needs the outputs in the DVC cache",
    "cdiff readme-results": "the README names the subcommand; `make readme-results` gives its arguments",
}
CDIFF_RUN = {"--help", "dvc-yaml", "dvc-record"}  # cdiff subcommands (or flag) that run as written


def documented_commands() -> list[str]:
    commands = []
    for page in PAGES:
        commands += page_commands(page.read_text())
    return list(dict.fromkeys(commands))


def page_commands(text: str) -> list[str]:
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.split(" ", 1)[0] in TOOLS:
                commands.append(line)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    spans = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]  # a span may wrap
    commands += [s for s in spans if s.split(" ", 1)[0] in TOOLS and " " in s]
    fragments = [s for s in spans if s.startswith("--config ")]
    commands += [f for f in fragments if not any(c.startswith("snakemake") and f in c for c in commands)]
    return commands


COMMANDS = documented_commands()


def rule_subcommands() -> list[str]:
    """The cdiff subcommands the Snakemake rules call."""
    text = "".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    return sorted(set(re.findall(r"python -m continual_diffusion ([\w-]+)", text)))


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory):
    """A smoke-profile copy of the workflow (Snakemake, cdiff) and a committed copy for DVC whose stage
    outputs exist as empty folders (DVC's dry run hashes the dependencies of every stage)."""
    smoke = workflow_copy(tmp_path_factory.mktemp("readme") / "smoke")
    dvc = tmp_path_factory.mktemp("readme") / "dvc"
    shutil.copytree(smoke, dvc, symlinks=True)
    for stage in pipeline.STAGES:
        for out in stage.outs_for("smoke"):
            (dvc / out).mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "add", "-A"], cwd=dvc, check=True, capture_output=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "workflow"], cwd=dvc,
                   check=True)
    return {"smoke": smoke, "dvc": dvc}


def check_snakemake(argv: list[str], ws) -> None:
    if "<stage>" in argv:
        i = argv.index("<stage>")
        argv = argv[:i] + [s.name for s in pipeline.STAGES] + argv[i + 1:]
    run([*argv, "-n"], ws["smoke"], timeout=120)


def check_dvc(command: str, argv: list[str], ws) -> None:
    if command in HELP_ONLY:
        run([*argv, "--help"], ws["dvc"], timeout=60)
        return
    if argv[1:3] == ["exp", "run"]:
        run([*argv[:3], "--queue", *argv[3:]], ws["dvc"], timeout=60)
    elif argv[1] == "repro":
        run([*argv, "--dry"], ws["dvc"], timeout=60)
    else:
        run(argv, ws["dvc"], timeout=60)
    overrides = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-S", "--set-param")]
    config.load([ws["dvc"] / "params.yaml"], overrides)  # a bad key or value: PipelineError


def check_cdiff(command: str, argv: list[str], ws) -> None:
    if command in HELP_ONLY:
        run([*argv[:2], "--help"], ws["smoke"], timeout=60)
    elif "<stage>" in argv:
        assert argv[1:] == ["<stage>", "--help"], command
        for sub in rule_subcommands():
            with pytest.raises(SystemExit) as exit_info:
                build_parser().parse_args([sub, "--help"])
            assert exit_info.value.code == 0, sub
    elif argv[1] in CDIFF_RUN or "--help" in argv:
        run(argv, ws["smoke"], timeout=120)
    else:
        build_parser().parse_args(argv[1:])  # the documented arguments exist (SystemExit 2 otherwise)
        run([*argv[:2], "--help"], ws["smoke"], timeout=60)


@pytest.mark.parametrize("command", COMMANDS)
def test_documented_command_works(command, workspaces):
    if command in NOT_RUN:
        pytest.skip(NOT_RUN[command])
    argv = shlex.split(command)
    unhandled = [a for a in argv if re.search(r"<(?!stage>)|\.\.\.", a)]
    assert not unhandled, f"{command}: a placeholder; add it to NOT_RUN with the reason, or handle it here"
    if argv[0] == "--config":
        run(["snakemake", "-n", "--cores", "1", *argv], workspaces["smoke"], timeout=120)
    elif argv[0] == "snakemake":
        check_snakemake(argv, workspaces)
    elif argv[0] == "dvc":
        check_dvc(command, argv, workspaces)
    elif argv[0] == "cdiff":
        check_cdiff(command, argv, workspaces)
    elif argv[0] == "make":
        run(["make", "-n", *argv[1:]], REPO, timeout=60)
    else:
        pytest.fail(f"{command}: no check for {argv[0]}")


def test_the_commands_are_found_and_the_exceptions_are_still_documented():
    expected = {"make run", "make test", "snakemake --cores all", "snakemake --cores all <stage>", "dvc repro",
                "cdiff --help", "snakemake --workflow-profile profiles/slurm",
                "snakemake --cores all --config profile=paper_faces"}
    assert expected <= set(COMMANDS)
    assert [c for c in (*NOT_RUN, *HELP_ONLY) if c not in COMMANDS] == []


def test_a_dotted_config_key_is_what_this_check_catches(workspaces):
    # Snakemake 9 rejects `--config train.methods=...`; the README writes the nested form
    result = run(["snakemake", "-n", "--cores", "1", "--config", "train.methods=[clora,lora_sequential]"],
                 workspaces["smoke"], check=False, timeout=120)
    assert result.returncode != 0 and "valid identifier" in result.stdout + result.stderr


# [text](target) and ![alt](target), outside code spans and blocks; the target up to a space or ")"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")


def relative_links(page) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    text = re.sub(r"`[^`]*`", "", text)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


def anchors(page) -> set[str]:
    """GitHub's anchors of a Markdown page's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", [*PAGES, REPO / "studies" / "README.md"], ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_an_existing_file(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = page.parent / path
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: links to missing files or headings: {broken}"


def test_the_link_check_sees_links_and_images():
    links = relative_links(README)
    assert "docs/img/default_run_concept_curves_accuracy_closed.png" in links
    assert "docs/configuration.md#the-paper-settings-data" in links
    assert "the-paper-settings-data" in anchors(REPO / "docs" / "configuration.md")
