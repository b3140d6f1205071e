"""The shared kernel holds what two or more services use (issue #12), proved from the imports.

Each service's source tree (``services/*/src``) is parsed with :mod:`ast`; a kernel module counts as used by a
service when the service imports it, directly or through other kernel modules. Issue #12 moves the modules used
by one service (or none) into that service; until each moves, it is listed in ``NOT_SHARED_YET``. The test is a
ratchet: a new kernel module that fewer than two services use fails it, and so does a listed module that has
moved or become shared (take it off the list, so the list only shrinks). The shared migration chain and the
development package (``radcds_devstack``) are issue #12's later steps and are left out here. The kernel's operator
tools (``radcds.ops``, the dead-letter replay) serve every service's topics without being imported by any (an
import-linter contract forbids services to import them), so they are left out too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
KERNEL = ROOT / "libs" / "radcds" / "src"
LEFT_OUT = ("radcds_devstack.legacy.migrations", "radcds_devstack")
#: Kernel packages run by operators, not imported by services.
OPERATOR_TOOLS = "radcds.ops."


def _kernel_modules() -> dict[str, Path]:
    """Dotted name → file of every kernel module that is not a package's ``__init__``."""
    out = {}
    for path in KERNEL.rglob("*.py"):
        name = ".".join(path.relative_to(KERNEL).with_suffix("").parts)
        if path.name == "__init__.py" or name.startswith(OPERATOR_TOOLS):
            continue
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


def test_every_kernel_module_is_imported_by_two_services_or_more():
    users = _users()
    single = {name: sorted(who) for name, who in sorted(users.items()) if len(who) < 2}
    assert single == {}, "kernel modules fewer than two services use: move each into its one user (or tools/devstack)"


def test_the_proof_sees_the_kernel_modules_every_service_uses():
    users = _users()
    assert users["radcds.domain.events"] == {"fusion", "imaging", "inference", "referral", "reporting", "worklist"}
    assert users["radcds.adapters.db.outbox"] >= {"fusion", "imaging", "referral", "reporting"}
