"""The pinned requirements of authbench's two images, and their installation into /opt/venv.

Runs with the image's own python3 (3.11+, standard library only), in the Dockerfile and in
scripts/build-base-images.sh:

    python3 image_requirements.py list pyproject.toml service   # the services' runtime
    python3 image_requirements.py list pyproject.toml load      # runtime + harness + build
    python3 image_requirements.py install REQUIREMENTS [--drop-pip]

`install` makes the venv when there is none, checks each pin against what the venv holds
and runs pip only when one is missing or differs: a base image made by
build-base-images.sh already holds them all, so the build then needs no network (and no
pip). `--drop-pip` removes pip and setuptools from the venv afterwards: the service image
runs code, it never installs any.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

VENV = Path("/opt/venv")
VENV_PYTHON = VENV / "bin" / "python"

# Which requirements each image installs: `service` is pyproject's `dependencies` (the
# runtime of authcore and the three services); `load` adds the `harness` extra and the build
# backend (the load image pip-installs the project itself, for the `authbench` CLI).
IMAGES = {"service": (), "load": ("harness",)}

# Run by the venv's interpreter: the requirements it does not satisfy. An exact pin
# (name==version) must match; any other form (setuptools>=69) only has to be present, and
# pip, when it runs for a missing pin, settles those too. Markers (after ";") are ignored:
# the ones in pyproject.toml hold on every Linux image.
_MISSING = """
import importlib.metadata as md, re, sys
for line in open(sys.argv[1]).read().splitlines():
    req = line.split(";")[0].strip()
    if not req:
        continue
    name, op, version = re.match(r"([A-Za-z0-9_.-]+)\\s*([=<>!~]=?)?\\s*(.*)", req).groups()
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have is None or (op == "==" and have != version):
        print(req)
"""


def requirements(pyproject: Path, image: str) -> list[str]:
    with pyproject.open("rb") as f:
        project = tomllib.load(f)
    pins = list(project["project"]["dependencies"])
    for extra in IMAGES[image]:
        pins += project["project"]["optional-dependencies"][extra]
    if image == "load":
        pins = list(project["build-system"]["requires"]) + pins
    return pins


def _run(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True)


def install(requirements_file: Path, drop_pip: bool) -> None:
    if not VENV_PYTHON.exists():
        _run(sys.executable, "-m", "venv", VENV)
    missing = subprocess.run(
        [str(VENV_PYTHON), "-c", _MISSING, str(requirements_file)],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    if missing:
        print(f"image-requirements: installing {len(missing)} pins: {' '.join(missing)}")
        has_pip = subprocess.run([str(VENV_PYTHON), "-m", "pip", "--version"], capture_output=True)
        if has_pip.returncode != 0:
            ensurepip = [str(VENV_PYTHON), "-m", "ensurepip", "--default-pip"]
            ensured = subprocess.run(ensurepip, capture_output=True)
            if ensured.returncode != 0:
                raise SystemExit(
                    "image-requirements: the base image lacks these pins and has no pip to "
                    "install them; a base made by scripts/build-base-images.sh is older than "
                    "pyproject.toml: run that script again (setup-docker.sh does)"
                )
        _run(VENV_PYTHON, "-m", "pip", "install", "-q", "-r", requirements_file)
    else:
        print("image-requirements: every pin is already in the venv (nothing to install)")
    if drop_pip:
        present = [
            name
            for name in ("pip", "setuptools", "wheel")
            if subprocess.run(
                [str(VENV_PYTHON), "-c", f"import importlib.metadata as m; m.version({name!r})"],
                capture_output=True,
            ).returncode
            == 0
        ]
        if present:
            _run(VENV_PYTHON, "-m", "pip", "uninstall", "-q", "-y", *present)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lister = sub.add_parser("list", help="print one image's pinned requirements")
    lister.add_argument("pyproject", type=Path)
    lister.add_argument("image", choices=sorted(IMAGES))
    installer = sub.add_parser("install", help="install missing pins into /opt/venv")
    installer.add_argument("requirements", type=Path)
    installer.add_argument("--drop-pip", action="store_true", help="remove pip afterwards")
    args = parser.parse_args()
    if args.command == "list":
        print("\n".join(requirements(args.pyproject, args.image)))
    else:
        install(args.requirements, args.drop_pip)


if __name__ == "__main__":
    main()
