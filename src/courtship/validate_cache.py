"""``courtship validate``'s answer kept beside the project, in ``.courtship/validate.json``.

Most of the time of a ``validate`` that finds nothing new goes to importing jsonschema, networkx
and Jinja and to compiling and test-rendering every template. So the answer (the files checked
and their findings) is kept with a key of everything it was worked out from, and a run whose
key is the same prints it without validating again. The key holds:

- Courtship's version and the size and modification time of each of its own modules;
- the working folder (findings name files relative to it), the project folder and the paths
  asked for;
- the project file's text (its findings, the attributes it declares as facts);
- the catalogue the installed plugins make (every fact with its type and values, the channels)
  and the template filters they add (name, and the module that defines each);
- the JSON Schemas (in a checkout, beside the package: size and modification time);
- every playbook file under the folders checked and every file of their ``templates/`` folders
  (and of the one beside a file checked): its name, its kind (file, link and where it leads,
  anything else), and a hash of its content. Nothing else there is read by a validation.

Anything else changes nothing a validation says. Beside the answer, the file keeps what was
found of each file (``courtship.validate.check_files``: each playbook's findings and summary,
its checks, each template's findings; the project file's findings and attributes), under the key
of the environment (``keys``): Courtship's version and modules, the working and project folders,
the plugins' catalogue and filters, the JSON Schemas. A run whose whole key differs gives again
what is kept of each file that did not change, and works out the rest. The cache is only ever a
shortcut: one that cannot be read (damaged, another version's) is ignored, one that cannot be
written (a read-only folder) is not written, and neither is reported. Only a project folder (one
with ``courtship.yaml``) keeps one.

This module imports nothing heavy: a run that finds its answer here imports neither the
validator nor what it needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import courtship
from courtship.findings import Finding, Severity

#: The cache file, in the project's ``.courtship`` folder.
CACHE_FILE = "validate.json"
#: As ``courtship.validate`` names them (not imported here: it is what a kept answer spares).
PLAYBOOK_SUFFIXES = (".yaml", ".yml")
TEMPLATES = "templates"
_FORMAT = 2


def cache_file(root: Path) -> Path | None:
    """Where the project in ``root`` keeps the answer; None for a folder that is no project."""
    return root / ".courtship" / CACHE_FILE if (root / "courtship.yaml").is_file() else None


class Uncacheable(Exception):
    """What a validation reads cannot all be told by a key: a link to a folder among the
    folders checked (its files are read through it), or plugins that fail to load."""


def key(root: Path, paths: Sequence[Path]) -> str | None:
    """The key of a validation of ``paths`` in the project ``root`` (see the module's text);
    None when the project keeps no answer, or this one cannot be told by a key."""
    found = keys(root, paths)
    return found[1] if found is not None else None


def keys(root: Path, paths: Sequence[Path]) -> tuple[str, str] | None:
    """The key of the environment (all the module's text lists but the project file and the
    files checked: Courtship, the folders, the plugins, the schemas), under which what is kept
    of each file holds, and the key of the whole validation of ``paths``; None as for
    ``key``."""
    if cache_file(root) is None:
        return None
    try:
        return _keys(root, paths)
    except (Uncacheable, OSError):
        return None


def _adder(digest: Any) -> Any:
    def add(*parts: object) -> None:
        digest.update(json.dumps(parts, default=str).encode("utf-8", "surrogateescape"))
        digest.update(b"\n")

    return add


def _add_environment(add: Any, root: Path) -> None:
    add("courtship", _FORMAT, courtship.__version__, os.getcwd(), str(root.resolve()))
    package = Path(courtship.__file__).parent
    for name, status in _modules(package, ""):
        add(name, status.st_size, status.st_mtime_ns)
    # the JSON Schemas, in a checkout beside the package (courtship.schema.schema_path)
    for schema in sorted((package.parents[1] / "schemas").glob("*.json")):
        add(str(schema), _stamp(schema))
    _add_plugins(add)


def _keys(root: Path, paths: Sequence[Path]) -> tuple[str, str]:
    around = hashlib.sha256()
    _add_environment(_adder(around), root)
    environment = around.hexdigest()
    digest = hashlib.sha256()
    add = _adder(digest)
    add("environment", environment)
    project = root / "courtship.yaml"
    add("project", _content(project))
    folders: list[Path] = []
    for path in paths:
        add("path", str(path), path.is_file(), path.is_dir())
        if path.is_dir():
            folders.append(path)
        elif path.is_file():
            add("file", _content(path))
            folders.append(path.parent / "templates")
    for folder in folders:
        for where, dirs, names in os.walk(folder):
            # hidden folders hold no playbook or template (a virtualenv, .git, .courtship)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if any(Path(where, d).is_symlink() for d in dirs):
                raise Uncacheable(where)
            # What a validation reads: playbook files, and templates folders (their files);
            # a data file beside the playbooks (``playbooks: .``) is never read, nor hashed.
            inside = TEMPLATES in Path(where).relative_to(folder).parts or (
                Path(where).name == TEMPLATES and Path(where) == folder
            )
            for name in sorted(names):
                if inside or name.endswith(PLAYBOOK_SUFFIXES):
                    file = Path(where, name)
                    add(str(file), *_entry(file))
    return environment, digest.hexdigest()


def _modules(folder: Path, prefix: str) -> list[tuple[str, os.stat_result]]:
    """Each of Courtship's own files in ``folder`` (its modules, its data: ``.py``, ``.yaml``,
    ``.json``) with its status, named from the package's folder, in order."""
    found: list[tuple[str, os.stat_result]] = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda entry: entry.name):
            if entry.is_dir(follow_symlinks=False):
                found += _modules(Path(entry.path), f"{prefix}{entry.name}/")
            elif entry.name.endswith((".py", ".yaml", ".json")) and entry.is_file():
                found.append((prefix + entry.name, entry.stat()))
    return found


def _add_plugins(add: Any) -> None:
    from courtship.plugins import PluginError, installed

    try:
        registry = installed()
        facts = registry.facts()
        channels = registry.channels()
        filters = registry.template_filters()
    except PluginError as error:  # the validation reports it; no answer is kept for it
        raise Uncacheable(str(error)) from None
    # the core facts and channels are Courtship's own files (catalogue/facts.yaml), stamped above
    add("facts", sorted((name, repr(spec)) for name, spec in facts.items()))
    add("channels", sorted(channels))
    for name, spec in sorted(filters.items()):
        function = spec.function
        module = getattr(function, "__module__", None)
        origin = getattr(sys.modules.get(module or ""), "__file__", None)
        stamp = _stamp(Path(origin)) if origin else None
        add("filter", name, module, getattr(function, "__qualname__", repr(function)), stamp)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _entry(file: Path) -> tuple[object, ...]:
    """What a file under a checked folder is: a link (and where it leads) and its content."""
    link = None
    try:
        status = os.lstat(file)
        if stat.S_ISLNK(status.st_mode):
            link = os.readlink(file)
            status = os.stat(file)
    except OSError:
        return ("missing", link)
    if not stat.S_ISREG(status.st_mode):  # a pipe, a socket, a device: never read here
        return ("other", link, status.st_mode, str(file.resolve()))
    return ("file", link, str(file.resolve()) if link else None, _content(file))


def _content(file: Path) -> str | None:
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError:
        return None


def finding_to_json(finding: Finding) -> dict[str, Any]:
    return {
        "path": finding.path,
        "line": finding.line,
        "col": finding.col,
        "severity": finding.severity.value,
        "rule_id": finding.rule_id,
        "message": finding.message,
        "hint": finding.hint,
        "json_path": finding.json_path,
    }


def finding_from_json(data: Any) -> Finding:
    """The finding ``finding_to_json`` wrote; ``KeyError``, ``TypeError`` or ``ValueError``
    for anything else."""
    return Finding(
        path=str(data["path"]),
        line=int(data["line"]),
        col=int(data["col"]),
        severity=Severity(data["severity"]),
        rule_id=str(data["rule_id"]),
        message=str(data["message"]),
        hint=str(data["hint"]),
        json_path=str(data["json_path"]),
    )


def kept_data(root: Path) -> dict[str, Any]:
    """Everything the project in ``root`` keeps (empty when nothing, or nothing readable)."""
    place = cache_file(root)
    if place is None:
        return {}
    try:
        data = json.loads(place.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == _FORMAT else {}


def load(
    root: Path, wanted: str, data: dict[str, Any] | None = None
) -> tuple[str | None, list[str], list[Finding]] | None:
    """The project file's name, the files checked and the findings kept for key ``wanted``
    (in ``data``, what ``kept_data`` read, or read here); None when the project keeps none,
    or one for another key."""
    data = kept_data(root) if data is None else data
    try:
        if data.get("key") != wanted:
            return None
        findings = [finding_from_json(f) for f in data["findings"]]
        return data["project_file"], [str(f) for f in data["files"]], findings
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def save(
    root: Path,
    wanted: str | None,
    project_file: str | None,
    files: Sequence[str],
    findings: Sequence[Finding],
    parts: dict[str, Any] | None = None,
) -> None:
    """Keep this answer for key ``wanted`` (None: the parts only), and ``parts``: what was
    found of each file, for a validation after a change to give again for the files it did not
    change (``courtship.validate.check_files``). Silently not where the folder cannot be
    written."""
    place = cache_file(root)
    if place is None:
        return
    data = {
        "format": _FORMAT,
        "key": wanted,
        "project_file": project_file,
        "files": list(files),
        "findings": [finding_to_json(f) for f in findings],
        **(parts or {}),
    }
    partial = place.with_suffix(f".{os.getpid()}.tmp")
    try:
        place.parent.mkdir(exist_ok=True)
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, place)  # whole or not at all
    except (OSError, ValueError, TypeError):  # ValueError, TypeError: a value JSON cannot hold
        with contextlib.suppress(OSError):  # no folder to leave it in, as often as not
            partial.unlink()
