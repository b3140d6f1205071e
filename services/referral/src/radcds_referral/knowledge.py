"""Loading the rule files at start-up (a bad file stops the service, naming the file)."""

from __future__ import annotations

from pathlib import Path

from radcds_referral.domain.appropriateness import Rule, load_rules


def load_knowledge(directory: Path) -> list[Rule]:
    """Every rule in ``directory/rules`` (see docs/referral.md, section Rules for the format)."""
    return load_rules(directory / "rules")
