"""The shared kernel holds what two or more services use (issue #12), proved from the imports.

Each service's source tree (``services/*/src``) is parsed with :mod:`ast`; a kernel module counts as used by a
service when the service imports it, directly or through other kernel modules. Issue #12 moves the modules used
by one service (or none) into that service; until each moves, it is listed in ``NOT_SHARED_YET``. The test is a
ratchet: a new kernel module that fewer than two services use fails it, and so does a listed module that has
moved or become shared (take it off the list, so the list only shrinks). The shared migration chain and the
development package (``radcds.devstack``) are issue #12's later steps and are left out here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
KERNEL = ROOT / "libs" / "radcds" / "src"
LEFT_OUT = ("radcds.adapters.db.migrations", "radcds.devstack")

#: Kernel modules fewer than two services use, each to move into its service under issue #12 (the only user).
NOT_SHARED_YET = {
    # no service: development tools and benchmarks use them
    "radcds.adapters.dicom.storescu": "",
    "radcds.adapters.kafka.admin": "",
}


def _kernel_modules() -> dict[str, Path]:
    """Dotted name → file of every kernel module that is not a package's ``__init__``."""
    out = {}
    for path in KERNEL.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        name = ".".join(path.relative_to(KERNEL).with_suffix("").parts)
        if not name.startswith(LEFT_OUT):
            out[name] = path
    return out


def _imported(path: Path, known: Iterable[str]) -> set[str]:
    """The known modules ``path`` imports (``import a.b``, ``from a.b import c`` where ``a.b.c`` may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names & set(known)


def _users() -> dict[str, set[str]]:
    """Kernel module → the services that import it, directly or through other kernel modules."""
    modules = _kernel_modules()
    within = {name: _imported(path, modules) for name, path in modules.items()}
    users: dict[str, set[str]] = {name: set() for name in modules}
    for service in sorted((ROOT / "services").iterdir()):
        if not (service / "src").is_dir():
            continue
        reached: set[str] = set()
        todo = [m for p in (service / "src").rglob("*.py") for m in _imported(p, modules)]
        while todo:
            name = todo.pop()
            if name not in reached:
                reached.add(name)
                todo.extend(within[name])
        for name in reached:
            users[name].add(service.name)
    return users


def test_every_kernel_module_is_shared_by_two_services_or_listed_to_move_into_its_one_user():
    users = _users()
    single = {name: sorted(who) for name, who in users.items() if len(who) < 2}
    unlisted = {name: who for name, who in single.items() if name not in NOT_SHARED_YET}
    assert unlisted == {}, "kernel modules fewer than two services use: move each into its service"
    expected = {name: [owner] if owner else [] for name, owner in NOT_SHARED_YET.items()}
    wrong_owner = {name: who for name, who in single.items() if name in expected and who != expected[name]}
    assert wrong_owner == {}, "the listed user is not the one service that imports the module"


def test_modules_listed_to_move_are_still_single_service_kernel_modules():
    users = _users()
    stale = sorted(name for name in NOT_SHARED_YET if name not in users or len(users[name]) >= 2)
    assert stale == [], "moved or now shared: take these off NOT_SHARED_YET"
