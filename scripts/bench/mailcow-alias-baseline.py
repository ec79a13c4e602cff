#!/usr/bin/env python3
"""The baselines of the alias benchmark (`bench-alias`): what a small
script does against the Mailcow API without the reconciler.

  create  one `add/alias` per alias, one request after another;
  update  per changed alias, `edit/alias`, then re-list every alias
          (`get/alias/all`) to see the result, one after another.

Usage: mailcow-alias-baseline.py create|update URL API_KEY FILE
FILE is a JSON list of {"address": "...", "goto": ["...", ...]}.
Prints one JSON line: {"requests": N, "seconds": S}. One kept-alive
connection, as a script using a requests.Session would have. Exits
non-zero on the first answer Mailcow does not call a success.
"""

import http.client
import json
import sys
import time
import urllib.parse


class Mailcow:
    def __init__(self, url, key):
        parsed = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port)
        self.headers = {"X-API-Key": key, "Content-Type": "application/json"}
        self.requests = 0

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        self.conn.request(method, "/api/v1/" + path, body=data, headers=self.headers)
        response = self.conn.getresponse()
        text = response.read()
        self.requests += 1
        if response.status != 200:
            sys.exit(f"{method} {path}: HTTP {response.status}: {text[:200]!r}")
        return json.loads(text) if text.strip() else None

    def write(self, path, body):
        # Mailcow answers 200 for most failures; the envelope says which.
        answer = self.call("POST", path, body)
        messages = answer if isinstance(answer, list) else [answer]
        if not messages or any(
            not isinstance(m, dict) or m.get("type") != "success" for m in messages
        ):
            sys.exit(f"POST {path}: {answer!r}")


def create(api, aliases):
    for alias in aliases:
        api.write(
            "add/alias",
            {
                "address": alias["address"],
                "goto": ",".join(alias["goto"]),
                "active": 1,
                "sogo_visible": 1,
                "sender_allowed": 1,
                "private_comment": "baseline",
            },
        )


def update(api, aliases):
    for alias in aliases:
        api.write(
            "edit/alias",
            {"items": [alias["address"]], "attr": {"goto": ",".join(alias["goto"])}},
        )
        listed = api.call("GET", "get/alias/all") or []
        if not any(a.get("address") == alias["address"] for a in listed):
            sys.exit(f"{alias['address']} is not listed after its edit")


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("create", "update"):
        sys.exit(__doc__)
    mode, url, key, path = sys.argv[1:]
    with open(path) as f:
        aliases = json.load(f)
    api = Mailcow(url, key)
    started = time.monotonic()
    {"create": create, "update": update}[mode](api, aliases)
    seconds = time.monotonic() - started
    print(json.dumps({"requests": api.requests, "seconds": seconds}))


if __name__ == "__main__":
    main()
