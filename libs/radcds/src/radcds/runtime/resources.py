"""Data folders a service ships beside its code (decision rules, guideline tables)."""

from __future__ import annotations

from pathlib import Path


def shipped_data_dir(module_file: str, name: str) -> Path:
    """The folder ``name`` a service ships: inside its installed package (a wheel, as the container images
    install it, force-includes ``services/<service>/<name>`` there), else in the service's source tree
    (``services/<service>/<name>``, for the editable checkout ``make python-deps`` installs).

    ``module_file`` is the ``__file__`` of a module directly in the service's package.
    """
    package = Path(module_file).resolve().parent
    inside = package / name
    return inside if inside.is_dir() else package.parents[1] / name
