# Authentik → Customization → Property Mappings → Create → "Webhook Mapping"
# Name: authentik-reconciler token
#
# Authentik cannot sign webhook bodies, so the reconciler authenticates the
# sender by a shared secret. Use the value of WEBHOOK_TOKEN from the
# coordinator's environment. Prefer HTTPS between Authentik and the coordinator.
return {"X-Authentik-Webhook-Token": "REPLACE-WITH-WEBHOOK_TOKEN"}
