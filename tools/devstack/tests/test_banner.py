"""``make run`` and ``make up`` print where the worklist is and the development sign-in (issue #13)."""

from __future__ import annotations

from pathlib import Path

from radcds_devstack.__main__ import worklist_banner
from radcds_devstack.stack import LocalStack, Ports


def test_the_banner_names_the_worklist_url_and_every_development_account(tmp_path):
    stack = LocalStack(root=Path("."), run_dir=tmp_path, ports=Ports(worklist=18086))
    banner = worklist_banner(stack)
    assert "http://127.0.0.1:18086/" in banner
    for account in ("dr-ada (radiologist)", "dr-ben (radiologist)", "vic (viewer)", "ann (admin)"):
        assert account in banner
