"""Issue 19: systemd units that `systemd-analyze` finds clean and well fenced, a .deb built
from the lock with only the runtime in it, installed into a scratch root and run from there."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "packaging" / "systemd").glob("*.service"))
#: systemd's own "OK" band of `systemd-analyze security` ends at 4.0; we stay well inside it.
MAX_EXPOSURE = 2.0


def system_root(tmp_path: Path, payload: Path | None = None) -> Path:
    """A root with the host's systemd units (targets the ours name) plus ours."""
    root = tmp_path / "root"
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", units, dirs_exist_ok=True, symlinks=True)
    if payload is not None:
        shutil.copytree(payload, root, dirs_exist_ok=True, symlinks=True)
    else:
        shutil.copytree(ROOT / "packaging" / "systemd", units, dirs_exist_ok=True)
        for binary in ("celery", "pve-balancer"):
            path = root / "opt/pve-balancer/bin" / binary
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("#!/bin/sh\n")
            path.chmod(0o755)
    return root


def verify(root: Path) -> None:
    names = [u.name for u in UNITS]
    found = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}",
         *[str(root / "usr/lib/systemd/system" / n) for n in names]],
        capture_output=True, text=True, check=False)
    assert (found.returncode, found.stdout + found.stderr) == (0, "")
    for name in names:
        security = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", f"--root={root}", name],
            capture_output=True, text=True, check=False)
        match = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
        assert match, security.stdout + security.stderr
        assert float(match[1]) <= MAX_EXPOSURE, f"{name}: exposure {match[1]}"


needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="no systemd-analyze here")


@needs_systemd
def test_the_units_verify_clean_and_are_fenced_in(tmp_path: Path) -> None:
    verify(system_root(tmp_path))


def test_every_unit_shares_the_one_drop_in_and_waits_for_a_config() -> None:
    assert [u.name for u in UNITS] == [f"pve-balancer-{n}.service"
                                       for n in ("beat", "exporter", "web", "worker")]
    common = (ROOT / "packaging/systemd/pve-balancer-.service.d/10-common.conf").read_text()
    for line in ("User=pve-balancer", "EnvironmentFile=-/etc/pve-balancer/env",
                 "ConditionPathExists=/etc/pve-balancer/balancer.yaml", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "Restart=on-failure", "RestartPreventExitStatus=3"):
        assert line in common.splitlines(), line
    for unit in UNITS:
        assert "ExecStart=/opt/pve-balancer/bin/" in unit.read_text(), unit.name


def test_the_maintainer_scripts_start_nothing() -> None:
    for name in ("postinst", "prerm", "postrm"):
        script = ROOT / "packaging/debian" / name
        assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0, name
        commands = [line.strip() for line in script.read_text().splitlines()
                    if not line.strip().startswith(("#", "echo"))]
        assert not any(re.search(r"systemctl\s+(start|enable|restart)\b", c)
                       for c in commands), name


def test_the_lock_pins_every_runtime_dependency_within_its_bounds() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(line.split("==") for line in (ROOT / "requirements.lock").read_text().splitlines()
                if line and not line.startswith("#"))
    pins = {canonicalize_name(name): version for name, version in pins.items()}
    for spec in map(Requirement, declared):
        name = canonicalize_name(spec.name)
        assert name in pins, f"{name} is not in requirements.lock (make lock)"
        assert spec.specifier.contains(pins[name]), f"{name}=={pins[name]} outside {spec}"
    for test_only in ("pytest", "selenium", "cryptography", "hypothesis"):
        assert test_only not in pins, f"{test_only} is not a runtime dependency"


def test_the_wheel_carries_no_simulator_and_no_demo(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    [wheel] = tmp_path.glob("pve_balancer-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {"balancer", "tasks"} <= tops
    assert not tops & {"pvesim", "demo", "tests", "benchmarks"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "balancer/web/templates/page.html" in names and "balancer/web/static/style.css" in names


@pytest.mark.integration
@needs_systemd
@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="no dpkg-deb here")
def test_the_deb_installs_into_a_scratch_root_and_runs_from_there(tmp_path: Path) -> None:
    built = subprocess.run([str(ROOT / "packaging/build-deb.sh"), str(tmp_path / "dist")],
                           cwd=ROOT, capture_output=True, text=True, check=False, timeout=900)
    assert built.returncode == 0, built.stdout + built.stderr
    deb = Path(built.stdout.strip().splitlines()[-1])
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert re.fullmatch(rf"pve-balancer_{re.escape(version)}_[a-z0-9]+\.deb", deb.name)

    fields = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True,
                            check=True).stdout
    assert "Package: pve-balancer" in fields and "adduser" in fields
    assert re.search(r"Depends: python3 \(>= 3\.\d+\), python3 \(<< 3\.\d+\)", fields)
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True,
                             text=True, check=True).stdout
    for path in ("./usr/lib/systemd/system/pve-balancer-worker.service",
                 "./usr/lib/systemd/system/pve-balancer-.service.d/10-common.conf",
                 "./usr/share/doc/pve-balancer/examples/balancer.yaml",
                 "./usr/share/doc/pve-balancer/examples/env", "./usr/bin/pve-balancer"):
        assert path in listing, path
    assert "./etc/" not in listing, "nothing in /etc: the operator writes the config"
    assert not re.search(r"site-packages/(pvesim|demo|tests)/", listing)

    payload = tmp_path / "payload"
    subprocess.run(["dpkg-deb", "--extract", str(deb), str(payload)], check=True)
    venv = payload / "opt/pve-balancer"
    assert (venv / "bin/pve-balancer").read_text().splitlines()[0] == \
        "#!/opt/pve-balancer/bin/python3", "scripts name the installed venv, not the build's"
    run = [str(venv / "bin/python3"), str(venv / "bin/pve-balancer")]
    got = subprocess.run([*run, "--version"], capture_output=True, text=True, check=True)
    assert got.stdout.strip() == f"pve-balancer {version}"
    example = payload / "usr/share/doc/pve-balancer/examples/balancer.yaml"
    checked = subprocess.run([*run, "check-config", "--config", str(example)],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and "configuration OK" in checked.stdout, checked.stderr
    imports = subprocess.run([str(venv / "bin/python3"), "-c", "import pvesim"],
                             capture_output=True, text=True, check=False, cwd=tmp_path)
    assert imports.returncode != 0, "the simulator is not in the runtime venv"
    verify(system_root(tmp_path / "installed", payload))
