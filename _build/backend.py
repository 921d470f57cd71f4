"""A PEP 517 build backend in the standard library alone, so `pip install .` works with no index.

claude-bottle is pure Python with no dependencies; setuptools would need `wheel` (and, under build
isolation, an index to fetch both from). This backend zips the package into a py3-none-any wheel and
writes the metadata from pyproject.toml. It also builds sdists and PEP 660 editable wheels.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import tomllib
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "claude_bottle"
SDIST_FILES = ("pyproject.toml", "README.md", "_build/backend.py")


def _project() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        project = tomllib.load(handle)["project"]
    with open(os.path.join(ROOT, PACKAGE, "__init__.py"), encoding="utf-8") as handle:
        project["version"] = re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)
    return project


def _dist_name(project: dict) -> str:
    return f"{project['name'].replace('-', '_')}-{project['version']}"


def _metadata(project: dict) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project['description']}",
        f"Requires-Python: {project['requires-python']}",
        f"License: {project['license']['text']}",
    ]
    with open(os.path.join(ROOT, project["readme"]), encoding="utf-8") as handle:
        readme = handle.read()
    return "\n".join(lines + ["Description-Content-Type: text/markdown", "", readme])


def _package_files() -> list[str]:
    found = []
    for folder, dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found += [os.path.relpath(os.path.join(folder, f), ROOT) for f in sorted(files) if not f.endswith(".pyc")]
    return found


def _write_wheel(directory: str, project: dict, payload: dict[str, bytes]) -> str:
    dist = _dist_name(project)
    info = f"{dist}.dist-info"
    scripts = "".join(f"{k} = {v}\n" for k, v in project.get("scripts", {}).items())
    payload = dict(payload)
    payload[f"{info}/METADATA"] = _metadata(project).encode()
    payload[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: claude-bottle _build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    payload[f"{info}/entry_points.txt"] = f"[console_scripts]\n{scripts}".encode()
    record = []
    for name, data in payload.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    payload[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    filename = f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, filename), "w", zipfile.ZIP_DEFLATED) as wheel:
        for name in sorted(payload):
            wheel.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), payload[name])
    return filename


def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    return []


get_requires_for_build_sdist = get_requires_for_build_editable = get_requires_for_build_wheel


def build_wheel(wheel_directory: str, config_settings: dict | None = None, metadata_directory: str | None = None) -> str:
    payload = {}
    for rel in _package_files():
        with open(os.path.join(ROOT, rel), "rb") as handle:
            payload[rel.replace(os.sep, "/")] = handle.read()
    return _write_wheel(wheel_directory, _project(), payload)


def build_editable(wheel_directory: str, config_settings: dict | None = None, metadata_directory: str | None = None) -> str:
    return _write_wheel(wheel_directory, _project(), {"claude_bottle_editable.pth": (ROOT + "\n").encode()})


def build_sdist(sdist_directory: str, config_settings: dict | None = None) -> str:
    project = _project()
    dist = _dist_name(project)
    filename = f"{dist}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as sdist:
        for rel in [*SDIST_FILES, *_package_files()]:
            sdist.add(os.path.join(ROOT, rel), f"{dist}/{rel}")
        info = tarfile.TarInfo(f"{dist}/PKG-INFO")
        data = _metadata(project).encode()
        info.size = len(data)
        sdist.addfile(info, io.BytesIO(data))
    return filename
