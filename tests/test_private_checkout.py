"""`make test` passes wherever the checkout lives, even where only its owner can enter.

The tests that run a process as another uid (the image replay runs the exporter as 65532)
run again in a copy of the working tree inside a fresh 0700 directory, as `mktemp -d` makes
one, with umask 077: a file or interpreter they hand that uid from the checkout, from its
.venv or from pytest's tmp_path is then out of its reach and the run fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Every test that runs something as another uid. Never list a test of this file here:
# the nested run would start another nested run.
AS_ANOTHER_USER = (
    "tests/test_deploy.py::test_image_serves_every_demo_project_as_non_root_on_a_read_only_root",
    "tests/test_deploy.py::test_healthcheck_passes_against_the_running_exporter",
)
NESTED = "OMS_TESTS_IN_PRIVATE_CHECKOUT"  # set in the nested run, to refuse to recurse
TIMEOUT_SECONDS = 300


def git(*args: str) -> str:
    """Run git on this repository (even if another uid owns it), failing with its message."""
    command = shutil.which("git")
    if command is None:
        pytest.fail("git is not installed (Debian package git): this test copies the work tree")
    # Another uid may own the checkout; its code runs here anyway, so trust its git config.
    trusted = f"safe.directory={REPO}"
    result = subprocess.run(
        [command, "-c", trusted, "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"git {' '.join(args)}: {result.stderr.strip()} "
            "(this test copies the files of the git work tree the tests are in)"
        )
    return result.stdout


def working_tree() -> tuple[Path, list[str]]:
    """The repository root and the files git tracks or would, as on disk (edits included)."""
    top = Path(git("rev-parse", "--show-toplevel").strip())
    listed = git("-C", str(top), "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    names = [name for name in listed.split("\0") if name]
    return top, [name for name in names if os.path.lexists(top / name)]  # not the deleted


@pytest.fixture
def private_checkout() -> Iterator[Path]:
    """A copy of the working tree at <mkdtemp, 0700>/main; removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="oms-exporter-private-"))
    try:
        parent.chmod(0o700)
        top, names = working_tree()
        checkout = parent / "main"
        for name in names:
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(top / name, checkout / name, follow_symlinks=False)
        yield checkout
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def run_pytest(checkout: Path, *test_ids: str) -> subprocess.CompletedProcess[str]:
    """Run this venv's pytest in `checkout`; SIGINT on timeout, so its fixtures stop servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_EXPORTER_")}
    env.pop("PYTEST_CURRENT_TEST", None)
    env[NESTED] = "1"
    basetemp = checkout.parent / "pytest-tmp"  # inside the 0700 parent too, and removed with it
    options = ["-p", "no:cacheprovider", f"--basetemp={basetemp}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *options, *test_ids],
        cwd=checkout,
        env=env,
        umask=0o077,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"the nested pytest did not finish in {TIMEOUT_SECONDS} s:\n{stdout}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_tests_run_as_another_user_pass_in_a_checkout_only_its_owner_can_enter(
    private_checkout: Path,
) -> None:
    if os.environ.get(NESTED):
        pytest.fail(f"{NESTED} is set: this test must not run inside its own nested run")
    assert not any(
        test_id.startswith("tests/test_private_checkout.py") for test_id in AS_ANOTHER_USER
    )
    assert private_checkout.parent.stat().st_mode & 0o777 == 0o700
    result = run_pytest(private_checkout, *AS_ANOTHER_USER)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert f"rootdir: {private_checkout}" in result.stdout  # it ran the copy, not this tree
    assert f"{len(AS_ANOTHER_USER)} passed" in result.stdout
