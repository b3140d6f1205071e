"""``python -m radcds_devstack.schemas [--check]`` (``make schemas``): write the events' JSON Schemas.

Each file in ``radcds/schemas/`` whose event kind has a payload declaration
(:data:`radcds.domain.events.PAYLOAD_CONTRACTS`) is generated from it; ``--check`` writes nothing and exits 1
when a committed file differs from what its declaration generates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import radcds
from radcds.domain import wire
from radcds.domain.events import PAYLOAD_CONTRACTS


def schemas_dir() -> Path:
    """The kernel's ``radcds/schemas`` folder in the source tree (the workspace installs it editable)."""
    return Path(radcds.__file__).parent / "schemas"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) every declared payload schema; return the exit status."""
    parser = argparse.ArgumentParser(prog="radcds_devstack.schemas", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when a file differs")
    args = parser.parse_args(argv)
    stale = []
    for contract in PAYLOAD_CONTRACTS:
        path = schemas_dir() / contract.kind.schema
        text = wire.render(contract.schema())
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    verb = "differ from their declarations" if args.check else "written"
    print(f"{len(stale)} of {len(PAYLOAD_CONTRACTS)} schemas {verb}{': ' + ', '.join(stale) if stale else ''}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
