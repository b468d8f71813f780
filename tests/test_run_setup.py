"""``./run``'s set-up: what it installs, when, and what it says otherwise.

Each case runs a copy of the real script in a sandbox, never touching this machine's
packages: PATH is a folder of links to this machine's commands minus the ones the
case takes away, with a fake ``apt-get`` that records its arguments (and "installs"
by adding the links back), a fake ``id`` where the case is not root, and a fake
``.venv/bin/tox`` that records how it was called instead of running an environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEM_COMMANDS = ("ip", "nft", "nsenter", "unshare", "setpriv", "mount", "curl", "iptables")
PROVIDES = {"iproute2": ["ip"], "nftables": ["nft"], "iptables": ["iptables"],
            "curl": ["curl"], "mount": ["mount"], "util-linux": ["nsenter", "unshare", "setpriv"]}


class Sandbox:
    def __init__(self, root: Path, *, hide: tuple[str, ...] = (), root_user: bool = True,
                 apt: bool = True, apt_fails: bool = False, venv: bool = True) -> None:
        self.project, self.bin, self.log = root / "project", root / "bin", root / "calls.log"
        self.project.mkdir()
        self.bin.mkdir()
        shutil.copy2(REPO / "run", self.project / "run")
        for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
            if not folder or not Path(folder).is_dir():
                continue
            for entry in Path(folder).iterdir():
                target = self.bin / entry.name
                if (entry.name not in hide and entry.name not in ("apt-get", "id")
                        and not target.exists() and os.access(entry, os.X_OK)):
                    target.symlink_to(entry)
        self.real = {name: shutil.which(name) for name in SYSTEM_COMMANDS}
        if apt:
            installs = "\n".join(
                f'    {pkg}) {" ; ".join(self._link_back(c) for c in cmds)} ;;'
                for pkg, cmds in PROVIDES.items())
            self._script("apt-get", f"""
echo "apt-get DEBIAN_FRONTEND=${{DEBIAN_FRONTEND:-}} $*" >> {self.log}
{"echo 'E: Unable to locate package nftables' >&2; exit 100" if apt_fails else ""}
[ "$1" = install ] || exit 0
for pkg in "$@"; do
  case "$pkg" in
{installs}
  esac
done
""")
        uid = 0 if root_user else 1000
        self._script("id", f'[ "$1" = -u ] && echo {uid} || exec /usr/bin/id "$@"')
        if venv:
            tox = self.project / ".venv" / "bin" / "tox"
            tox.parent.mkdir(parents=True)
            tox.write_text(f'#!/bin/sh\necho "tox $*" >> {self.log}\n')
            tox.chmod(0o755)

    def _link_back(self, command: str) -> str:
        real = shutil.which(command)
        return f"ln -sf {real} {self.bin / command}" if real else "true"

    def _script(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text("#!/bin/bash\n" + body.strip() + "\n")
        path.chmod(0o755)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.project / "run"), *args], capture_output=True,
                              text=True, timeout=60,
                              env={"PATH": str(self.bin), "HOME": str(self.project), **env})

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def test_nothing_missing_goes_straight_to_tox_without_apt(tmp_path):
    box = Sandbox(tmp_path)
    r = box.run("tests", "-k", "kubectl")
    assert r.returncode == 0, r.stderr
    assert box.calls() == ["tox run -e tests -- -k kubectl"]
    assert r.stderr == ""


def test_a_leading_double_dash_is_not_passed_on_twice(tmp_path):
    box = Sandbox(tmp_path)
    assert box.run("conformance", "--", "-k", "walkthrough").returncode == 0
    assert box.calls() == ["tox run -e conformance -- -k walkthrough"]


def test_as_root_on_debian_it_installs_what_is_missing_and_says_so(tmp_path):
    box = Sandbox(tmp_path, hide=("nft", "iptables", "curl"))
    r = box.run("conformance")
    assert r.returncode == 0, r.stderr
    assert ("./run: installing system packages the project needs: nftables curl iptables "
            "(missing: nft, curl, iptables)") in r.stderr
    assert "./run: installed nftables curl iptables in " in r.stderr
    assert box.calls() == [
        "apt-get DEBIAN_FRONTEND=noninteractive update -q",
        "apt-get DEBIAN_FRONTEND=noninteractive install -y -q --no-install-recommends "
        "nftables curl iptables",
        "tox run -e conformance --",
    ]


def test_one_package_for_several_missing_commands(tmp_path):
    box = Sandbox(tmp_path, hide=("nsenter", "unshare"))
    r = box.run("tests")
    assert r.returncode == 0, r.stderr
    assert box.calls()[1].endswith("--no-install-recommends util-linux")


def test_not_root_it_exits_2_naming_the_exact_command(tmp_path):
    box = Sandbox(tmp_path, hide=("nft", "iptables"), root_user=False)
    r = box.run("conformance")
    assert r.returncode == 2
    assert "lacks what the project needs: nft, iptables." in r.stderr
    assert "  sudo apt-get update && sudo apt-get install -y nftables iptables\n" in r.stderr
    assert box.calls() == []  # neither apt-get nor tox


def test_without_apt_it_exits_2_naming_the_debian_packages(tmp_path):
    box = Sandbox(tmp_path, hide=("nft",), apt=False)
    r = box.run("tests")
    assert r.returncode == 2
    assert "their Debian names: nftables" in r.stderr
    assert box.calls() == []


def test_a_failing_apt_get_exits_2_with_its_output(tmp_path):
    box = Sandbox(tmp_path, hide=("nft",), apt_fails=True)
    r = box.run("tests")
    assert r.returncode == 2
    assert "E: Unable to locate package nftables" in r.stderr
    assert "apt-get could not install nftables" in r.stderr
    assert not any(c.startswith("tox") for c in box.calls())


def test_lint_needs_no_system_package(tmp_path):
    box = Sandbox(tmp_path, hide=("nft", "ip", "curl"), root_user=False)
    r = box.run("lint")
    assert r.returncode == 0, r.stderr
    assert box.calls() == ["tox run -e lint --"]


def test_a_missing_venv_module_is_installed_before_the_venv_is_made(tmp_path):
    """Debian ships python's ensurepip in python3-venv; without it ``python3 -m venv``
    fails.  The fake python3 lacks ensurepip until the fake apt-get installs the package;
    the venv it then makes holds a fake pip and tox, so nothing is downloaded."""
    box = Sandbox(tmp_path, hide=("python3",), venv=False)
    real = shutil.which("python3")
    assert real
    box._script("apt-get", f"""
echo "apt-get $*" >> {box.log}
[ "$1" = install ] && touch {box.bin}/.venv-installed
exit 0""")
    box._script("python3", f"""
if [ "$1" = -c ] && [ "$2" = "import ensurepip" ]; then
  [ -e {box.bin}/.venv-installed ]; exit $?
fi
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"
  printf '#!/bin/sh\\necho "pip $*" >> {box.log}\\n' > "$3/bin/pip"
  printf '#!/bin/sh\\necho "tox $*" >> {box.log}\\n' > "$3/bin/tox"
  chmod +x "$3/bin/pip" "$3/bin/tox"; exit 0
fi
exec {real} "$@"
""")
    r = box.run("tests")
    assert r.returncode == 0, r.stderr
    assert "installing system packages the project needs: python3-venv" in r.stderr
    assert box.calls() == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends python3-venv",
        "pip install --quiet --disable-pip-version-check tox==4.67.15",
        "tox run -e tests --",
    ]


@pytest.mark.parametrize("env", ["", "no-such-env"])
def test_without_an_environment_it_prints_usage(tmp_path, env):
    box = Sandbox(tmp_path)
    r = box.run(*([env] if env else []))
    if env:  # an unknown name is tox's to refuse; ./run passes it on
        assert box.calls() == ["tox run -e no-such-env --"]
    else:
        assert r.returncode == 2
        assert "./run conformance   the main job" in r.stdout
