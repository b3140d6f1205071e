"""The images' HEALTHCHECK: GET /healthz on the service's HTTP port (RADCDS_HEALTH_PORT, or the port the
service was told to listen on, RADCDS_<SERVICE>_HTTP_PORT); exit 0 when it answers 200, else 1.
Standard library only: the final stage has no curl."""

import os
import sys
import urllib.request

port = os.environ.get("RADCDS_HEALTH_PORT", "8080")
for name, value in os.environ.items():
    if name.startswith("RADCDS_") and name.endswith("_HTTP_PORT"):
        port = value
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
