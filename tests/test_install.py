"""A non-editable `pip install .` works: the schemas ship as package data
(read with importlib.resources) and `chunkindex info` / `chunkindex index`
run from the installed package, not from this checkout.

Kept fast: the package alone is installed (`--no-deps`) into a fresh venv
that reuses this environment's installed dependencies through a `.pth` file;
pip builds it in an isolated build environment, as for a user (so the
build-system requirements of pyproject.toml are exercised too).
"""

import os
import shutil
import site
import subprocess
import sys
import sysconfig

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("install")
    source = work / "src"
    source.mkdir()
    shutil.copytree(REPO / "chunkindex", source / "chunkindex", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # This environment's packages (not its editable chunkindex: a .pth line adds
    # a folder to sys.path without running that folder's own .pth files).
    shared = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (venv / purelib.split(str(venv) + "/", 1)[1] / "shared-deps.pth").write_text("\n".join(dict.fromkeys(shared)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # Build isolation, as users install: the build backend pyproject.toml asks for.
    built = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                            str(source)], env=env, cwd=work, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    shutil.rmtree(source)  # nothing may come from the source tree any more
    return venv, env, work


def test_installed_package_is_not_this_checkout(installed):
    venv, env, work = installed
    found = subprocess.run([str(venv / "bin/python"), "-c", "import chunkindex; print(chunkindex.__file__)"],
                           check=True, capture_output=True, text=True, env=env, cwd=work).stdout
    assert found.startswith(str(venv)), found


def test_installed_command_indexes_a_folder_and_reads_it(installed, fixtures_root):
    venv, env, work = installed
    command = str(venv / "bin/chunkindex")
    ran = subprocess.run([command, "index", str(fixtures_root / "bran"), "--out", str(work / "out"), "-q"],
                         capture_output=True, text=True, env=env, cwd=work)
    assert ran.returncode == 0, ran.stderr
    assert "indexed 3 files" in ran.stdout
    info = subprocess.run([command, "info", str(work / "out/bran.parq")], capture_output=True, text=True,
                          env=env, cwd=work)
    assert info.returncode == 0, info.stderr
    assert "temp('Time', 'st_ocean', 'yt_ocean', 'xt_ocean')" in info.stdout
