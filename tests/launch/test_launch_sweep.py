"""sweep.py and results.py: expansion, seed crossing, resumable local runs, the results table."""

import json
import pathlib
import shlex
import subprocess
import sys

import pytest
from etils import epath

from launch import results, sweep_runs

REPO = pathlib.Path(__file__).resolve().parents[2]
SWEEP = str(REPO / "launch" / "sweep.py")

CONFIG = '''
import ml_collections

def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.size = "tiny" if arg and "smoke" in arg else "base"
    config.selftrain = ml_collections.ConfigDict({"variant": "full", "rounds": 2})
    return config

def get_sweep(arg=None):
    return [{"selftrain.variant": "full"}, {"selftrain.variant": "no_filter", "selftrain.rounds": 3}]
'''

# Stands in for gramr2_jax.main: logs each start, fails for variant "broken", else writes metrics.
FAKE_MAIN = '''
import json, os, sys
flags = dict(arg[2:].split("=", 1) for arg in sys.argv[1:])
with open(os.environ["FAKE_MAIN_LOG"], "a") as log:
    log.write(json.dumps(flags) + "\\n")
if flags.get("config.selftrain.variant") == "broken":
    sys.exit(3)
seed = int(flags.get("config.seed", 0))
os.makedirs(flags["workdir"], exist_ok=True)
with open(os.path.join(flags["workdir"], "final_metrics.json"), "w") as f:
    json.dump({"accuracy": {0: 1.0, 1: 2.0, 2: 4.0}[seed], "rounds": 2, "converged": True}, f)
'''


@pytest.fixture
def config_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "exp.py"
    path.write_text(CONFIG)
    return path


def write_config(tmp_path: pathlib.Path, sweep_body: str) -> pathlib.Path:
    path = tmp_path / "custom.py"
    path.write_text(CONFIG.split("def get_sweep")[0] + sweep_body)
    return path


def test_points_come_from_get_sweep_and_are_crossed_with_seeds(config_file):
    assert sweep_runs.sweep_points(f"{config_file}:smoke", []) == [
        {"selftrain.variant": "full"}, {"selftrain.variant": "no_filter", "selftrain.rounds": 3}]
    crossed = sweep_runs.sweep_points(f"{config_file}:smoke", [0, 1])
    assert crossed == [
        {"selftrain.variant": "full", "seed": 0}, {"selftrain.variant": "full", "seed": 1},
        {"selftrain.variant": "no_filter", "selftrain.rounds": 3, "seed": 0},
        {"selftrain.variant": "no_filter", "selftrain.rounds": 3, "seed": 1}]


def test_get_sweep_receives_the_config_arg(tmp_path):
    path = write_config(tmp_path, "def get_sweep(arg=None):\n    return [{'size': arg}]\n")
    assert sweep_runs.sweep_points(f"{path}:size=tiny,smoke", []) == [{"size": "size=tiny,smoke"}]


def test_a_file_without_get_sweep_is_one_run(tmp_path):
    path = write_config(tmp_path, "")
    assert sweep_runs.sweep_points(str(path), []) == [{}]
    assert sweep_runs.sweep_points(str(path), [4, 5]) == [{"seed": 4}, {"seed": 5}]


def test_bad_overrides_fail_before_anything_runs(tmp_path):
    typo = write_config(tmp_path, "def get_sweep(arg):\n    return [{'selftrain.varient': 'x'}]\n")
    with pytest.raises(ValueError, match="varient"):
        sweep_runs.sweep_points(str(typo), [])
    seeded = write_config(tmp_path, "def get_sweep(arg):\n    return [{'seed': 1}]\n")
    with pytest.raises(ValueError, match="drop --seeds"):
        sweep_runs.sweep_points(str(seeded), [0])


def test_run_names_flags_and_workdirs(tmp_path):
    runs = sweep_runs.make_runs([{}, {"a.b": "x/y z", "seed": 2}], epath.Path(tmp_path))
    assert [run.name for run in runs] == ["default", "a.b=x_y_z,seed=2"]
    assert runs[1].workdir == epath.Path(tmp_path) / "a.b=x_y_z,seed=2"
    assert runs[1].command("python -m gramr2_jax.main", "c.py:smoke") == [
        "python", "-m", "gramr2_jax.main", "--config=c.py:smoke",
        f"--workdir={tmp_path}/a.b=x_y_z,seed=2", "--config.a.b=x/y z", "--config.seed=2"]
    with pytest.raises(ValueError, match="same run name"):
        sweep_runs.make_runs([{"a": "x/y"}, {"a": "x_y"}], epath.Path(tmp_path))


def run_sweep(config: str, workdir: pathlib.Path, log: pathlib.Path, *extra: str,
              ok: bool = True) -> subprocess.CompletedProcess:
    main_cmd = f"{shlex.quote(sys.executable)} {shlex.quote(str(workdir.parent / 'fake_main.py'))}"
    (workdir.parent / "fake_main.py").write_text(FAKE_MAIN)
    result = subprocess.run(
        [sys.executable, SWEEP, f"--config={config}", f"--workdir={workdir}",
         f"--main_cmd={main_cmd}", *extra],
        capture_output=True, text=True, env={"FAKE_MAIN_LOG": str(log), "PATH": "/usr/bin:/bin"})
    assert (result.returncode == 0) == ok, result.stderr
    return result


def started(log: pathlib.Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_local_sweep_is_resumable_and_tables_mean_and_std(config_file, tmp_path):
    workdir, log = tmp_path / "sweep", tmp_path / "main.log"
    run_sweep(f"{config_file}:smoke", workdir, log, "--seeds=0,1,2")
    first = started(log)
    assert len(first) == 6
    assert first[4] == {"config": f"{config_file}:smoke",
                        "workdir": f"{workdir}/selftrain.variant=no_filter,selftrain.rounds=3,seed=1",
                        "config.selftrain.variant": "no_filter", "config.selftrain.rounds": "3",
                        "config.seed": "1"}

    second = run_sweep(f"{config_file}:smoke", workdir, log, "--seeds=0,1,2")
    assert len(started(log)) == 6  # everything finished: the second invocation runs nothing
    assert second.stderr.count("done, skipped") == 6

    table = json.loads((workdir / "results.json").read_text())
    full = table["groups"][0]
    assert full["overrides"] == {"selftrain.variant": "full"} and full["n"] == 3
    assert full["seeds"] == [0, 1, 2]
    # accuracy 1, 2, 4: mean 7/3, sample variance ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3.
    assert full["metrics"]["accuracy"]["mean"] == pytest.approx(7 / 3)
    assert full["metrics"]["accuracy"]["std"] == pytest.approx((7 / 3) ** 0.5)
    assert full["metrics"]["rounds"] == {"mean": 2.0, "std": 0.0, "n": 3}
    assert "converged" not in full["metrics"]  # booleans are not averaged
    markdown = (workdir / "results.md").read_text()
    assert "| overrides (all but seed) | n | accuracy | rounds |" in markdown
    assert "| selftrain.variant=full | 3 | 2.333 ± 1.528 | 2 ± 0 |" in markdown
    assert "| selftrain.variant=no_filter, selftrain.rounds=3 | 3 | 2.333 ± 1.528 | 2 ± 0 |" in markdown


def test_failed_run_is_recorded_the_sweep_goes_on_and_a_rerun_retries_it(tmp_path):
    config = write_config(tmp_path, "def get_sweep(arg):\n    return [{'selftrain.variant': v} "
                                    "for v in ('broken', 'full')]\n")
    workdir, log = tmp_path / "sweep", tmp_path / "main.log"
    run_sweep(str(config), workdir, log)
    assert [flags["config.selftrain.variant"] for flags in started(log)] == ["broken", "full"]
    failure = json.loads((workdir / "selftrain.variant=broken" / "sweep_failed.json").read_text())
    assert failure["returncode"] == 3
    markdown = (workdir / "results.md").read_text()
    assert "## Failed runs\n\n- selftrain.variant=broken (exit code 3)" in markdown
    assert "| selftrain.variant=full | 1 | 1 | 2 |" in markdown  # n=1: no ± shown

    run_sweep(str(config), workdir, log)
    assert [flags["config.selftrain.variant"] for flags in started(log)][2:] == ["broken"]


def test_max_runs_and_dry_run(config_file, tmp_path):
    workdir, log = tmp_path / "sweep", tmp_path / "main.log"
    dry = run_sweep(str(config_file), workdir, log, "--seeds=0,1", "--dry_run")
    assert started(log) == [] and not workdir.exists()
    lines = dry.stdout.splitlines()
    assert len(lines) == 4
    assert shlex.split(lines[0])[-3:] == [f"--workdir={workdir}/selftrain.variant=full,seed=0",
                                         "--config.selftrain.variant=full", "--config.seed=0"]

    limited = run_sweep(str(config_file), workdir, log, "--seeds=0,1", "--max_runs=3")
    assert len(started(log)) == 3 and "--max_runs=3 reached" in limited.stderr
    assert "## Not run yet\n\n- selftrain.variant=no_filter,selftrain.rounds=3,seed=1" in (
        workdir / "results.md").read_text()
    run_sweep(str(config_file), workdir, log, "--seeds=0,1", "--max_runs=3")
    assert len(started(log)) == 4


def tpu_sweep(workdir: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SWEEP, "--config=configs/exp.py:smoke",
                           f"--workdir={workdir}", "--tpu=pod", "--zone=us-central2-b", "--dry_run",
                           *extra], capture_output=True, text=True)


def test_tpu_sweep_runs_this_script_on_all_workers():
    result = tpu_sweep("/mnt/gcs/sweeps/demo", "--seeds=0,1", "--max_runs=2")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    argv = shlex.split(line)
    assert argv[:7] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod", "--zone=us-central2-b"]
    assert argv[7] == "--worker=all"
    remote = shlex.split(argv[-1])
    assert "GRAMR2_MULTIHOST=1" in remote
    assert "log=$HOME/gramr2_jax/runs/sweep-demo/$(hostname).log;" in remote
    module = remote.index("launch.sweep")
    assert remote[module + 1:module + 5] == [
        "--config=configs/exp.py:smoke", "--workdir=/mnt/gcs/sweeps/demo", "--seeds=0,1",
        "--max_runs=2"]


@pytest.mark.parametrize("workdir", ["runs/sweep", "gs://bucket/sweeps/demo"])
def test_tpu_sweep_needs_a_mounted_absolute_workdir(workdir):
    # Relative: each worker's own disk. A URL: the pipeline cannot write there.
    result = tpu_sweep(workdir)
    assert result.returncode != 0 and "gcsfuse" in result.stderr and result.stdout == ""


def test_main_refuses_a_url_workdir():
    result = subprocess.run([sys.executable, "-m", "gramr2_jax.main",
                             "--config=configs/demo.py:smoke", "--workdir=gs://bucket/run"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --workdir: 'gs://bucket/run' is a URL")
    assert "Traceback" not in result.stderr


def test_metric_missing_from_some_runs_is_marked():
    table = {"groups": [{"overrides": {}, "n": 3, "metrics": {
        "a": results.summarize([1.0, 3.0]), "b": results.summarize([2.0, 2.0, 5.0])}}], "runs": []}
    markdown = results.to_markdown(table)
    assert "| (defaults) | 3 | 2 ± 1.414 [2] | 3 ± 1.732 |" in markdown


def test_unmeasured_metrics_count_as_missing(tmp_path):
    # NaN (older final_metrics.json), null and inf: left out of the mean, marked [n].
    runs = []
    for seed, precision in enumerate((0.5, float("nan"), None, float("inf"), 0.75)):
        workdir = epath.Path(tmp_path / f"seed={seed}")
        workdir.mkdir()
        (workdir / results.FINAL_METRICS).write_text(json.dumps(
            {"label/precision": precision, "test_id/accuracy": 0.5}))
        runs.append(sweep_runs.Run(f"seed={seed}", {"seed": seed}, workdir))
    [group] = results.collect(runs)["groups"]
    assert group["metrics"]["label/precision"] == {
        "mean": 0.625, "std": pytest.approx(0.1768, abs=1e-4), "n": 2}
    assert "| (defaults) | 5 | 0.625 ± 0.1768 [2] | 0.5 ± 0 |" in results.to_markdown(
        {"groups": [group], "runs": []})


def test_metrics_select_and_order_the_markdown_columns():
    metrics = {"test_id/accuracy": [0.5], "test_id/accuracy/logic": [0.25],
               "test_ood/accuracy": [0.75]}
    table = {"groups": [{"overrides": {"v": "x"}, "n": 1, "metrics": {
        name: results.summarize(values) for name, values in metrics.items()}}], "runs": []}
    markdown = results.to_markdown(table, ["test_ood/accuracy", "test_id/accuracy*"])
    assert "| overrides (all but seed) | n | test_ood/accuracy | test_id/accuracy | " \
           "test_id/accuracy/logic |" in markdown
    assert "| v=x | 1 | 0.75 | 0.5 | 0.25 |" in markdown
