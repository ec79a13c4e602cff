"""Prints the Mailcow simulator's state (GET /__sim/state on stdin) for the demo."""
import json
import sys

state = json.load(sys.stdin)


def show(title, rows):
    print(f"  {title}:")
    for row in rows or ["(none)"]:
        print(f"    {row}")


show(
    "sender_acl (login -> send_as)",
    [f"{r['logged_in_as']} -> {r['send_as']}" for r in state["sender_acl"] if not r.get("external")],
)
show(
    "app passwords (mailbox: name)",
    [f"{p['mailbox']}: {p['name']}" for p in state["app_passwords"]],
)
show(
    "aliases (address -> goto)",
    [f"{a['address']} -> {a['goto']}" for a in state["aliases"] if a["address"] != a["goto"]],
)
