# Authentik → Customization → Property Mappings → Create → "Webhook Mapping"
# Name: authentik-reconciler body
#
# Sends just what the reconciler needs to know *what* changed. It re-reads the
# current state from the Authentik API, so nothing here is trusted as state.
# `event_pk` lets the reconciler collapse Authentik's retried deliveries.
event = notification.event
context = event.context or {}
return {
    "event_pk": str(event.pk),
    "action": event.action,
    "model": context.get("model"),
    "created": event.created.isoformat() if event.created else None,
}
