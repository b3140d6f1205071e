"""Settings shared by every test session of the repository: the hypothesis profiles.

``ci`` (the default, in ``make test``): 150 examples per property and no per-example deadline, since these
machines are shared and timing is not what the properties check. ``fuzz`` (``make fuzz``): 20,000 examples
per property, for a long hunt. ``HYPOTHESIS_PROFILE`` chooses.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=150, deadline=None)
settings.register_profile("fuzz", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
