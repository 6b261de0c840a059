"""`make run`'s demo subscription: created once, kept in a file, printed as the blotter's URL.

Usage: demo_subscription.py <worker url> <file>. Reuses the subscription in <file> while the
worker still has it; otherwise creates one (all confirmations, JSON) with the admin token of
EXECDIST_ADMIN_TOKEN and writes its id and token there (a token is shown only at creation).
Prints the blotter's URL with the subscription and its token.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx


def main() -> int:
    base, path = sys.argv[1], Path(sys.argv[2])
    admin = {"Authorization": f"Bearer {os.environ['EXECDIST_ADMIN_TOKEN']}"}
    with httpx.Client(base_url=base, headers=admin, timeout=30) as http:
        saved = json.loads(path.read_text()) if path.exists() else None
        if saved is None or http.get(f"/api/v1/subscriptions/{saved['id']}").status_code != 200:
            response = http.post(
                "/api/v1/subscriptions",
                json={"name": "demo blotter", "filter": {}},
            )
            if response.status_code != 201:
                print(f"creating the demo subscription failed: {response.text}", file=sys.stderr)
                return 1
            created = response.json()
            saved = {"id": created["id"], "token": created["token"]}
            path.write_text(json.dumps(saved))
    print(f"{base}/?subscription={saved['id']}&token={saved['token']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
