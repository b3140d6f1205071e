"""The local OpenID Provider: npm ``oidc-provider`` 9.x (deploy/local/oidcprovider, installed into
``.cache/oidcprovider`` by ``make deps``), the worklist's identity provider in the local stack and the tests.

Issuer ``http://<host>:<port>``; one public client ``radcds-worklist`` (PKCE S256 required) whose redirect URIs
are given here; the development accounts dr-ada, dr-ben (radiologists), vic (viewer) and ann (admin), signed in
by name on the provider's development login form."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from radcds_devstack import processes


@dataclass(frozen=True)
class OidcProvider:
    """One oidc-provider process on ``host:port`` accepting ``redirect_uris`` for the worklist's client."""

    root: Path
    run_dir: Path
    host: str
    port: int
    redirect_uris: tuple[str, ...]
    name: str = "oidc"

    @property
    def home(self) -> Path:
        """Where ``make deps`` installed the provider (``npm ci`` of deploy/local/oidcprovider)."""
        return self.root / ".cache" / "oidcprovider"

    @property
    def issuer(self) -> str:
        """The issuer identifier (and discovery base) of this provider."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Start the provider with the server script from deploy/local/oidcprovider."""
        if not (self.home / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(f"oidc-provider missing in {self.home}: run `make deps`")
        node = shutil.which("node") or "node"
        script = self.root / "deploy" / "local" / "oidcprovider" / "server.mjs"
        # server.mjs imports oidc-provider: run a copy next to the installed node_modules.
        shutil.copyfile(script, self.home / "server.mjs")
        env = {
            **os.environ,
            "OIDC_HOST": self.host,
            "OIDC_PORT": str(self.port),
            "OIDC_ISSUER": self.issuer,
            "OIDC_REDIRECT_URIS": ",".join(self.redirect_uris),
        }
        processes.start(self.name, [node, str(self.home / "server.mjs")], run_dir=self.run_dir, env=env, cwd=self.home)

    def wait(self, timeout_s: float = 60.0) -> None:
        """Wait until the provider answers its discovery document."""
        url = f"{self.issuer}/.well-known/openid-configuration"
        processes.wait_until(
            lambda: processes.http_ok(url), timeout_s=timeout_s, what="OpenID Provider", alive=(self.name, self.run_dir)
        )
