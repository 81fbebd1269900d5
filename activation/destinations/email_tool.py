"""Email marketing tool: contact upsert plus list membership, over a Mailchimp-style REST API.

Contract:
  POST   <url>/3.0/lists/<list_id>                          batch upsert of contacts into the list
         {"members": [{"email_address": ..., "status_if_new": "subscribed", "merge_fields": {...}}],
          "update_existing": true}
         -> 200 {"new_members": [...], "updated_members": [...],
                 "errors": [{"email_address": ..., "error": ..., "error_code": ...}], "error_count": k}
  DELETE <url>/3.0/lists/<list_id>/members/<md5 of the lower-cased email>   remove from the list
         -> 204; 404 counts as done (already not a member: the delete is idempotent)
  Authorization: Bearer <api key>
Per-contact errors are rejected rows with the tool's reason."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from activation.destinations import Batch, BatchResult
from activation.destinations.http import HttpClient, HttpPolicy
from activation.errors import ActivationError
from activation.spec import SyncSpec


@dataclass
class EmailToolDestination:
    sync_name: str
    client: HttpClient
    list_path: str
    email_field: str
    policy: HttpPolicy

    @property
    def batch_size(self) -> int:
        return self.policy.batch_size

    @classmethod
    def from_settings(cls, spec: SyncSpec) -> EmailToolDestination:
        email_field = spec.setting("email_field", "email")
        if email_field not in [*spec.fields, *spec.identifiers]:
            raise ActivationError(
                f"sync {spec.name}: email destination field {email_field!r} is not mapped; mapped "
                f"fields are {', '.join([*spec.fields, *spec.identifiers])}. Map it or set email_field."
            )
        policy = HttpPolicy.from_spec(spec)
        client = HttpClient(spec.url(), policy, headers={"Authorization": f"Bearer {spec.secret('token_env')}"})
        return cls(spec.name, client, f"/3.0/lists/{spec.setting('list_id')}", email_field, policy)

    def send(self, batch: Batch) -> BatchResult:
        failed, rejected, codes, attempts, retries = {}, {}, {}, 0, 0
        if batch.upsert_operations:
            by_email: dict[str, str] = {}
            members = []
            for op in batch.upsert_operations:
                row = op.row
                email = str(row.get(self.email_field) or "")
                by_email[email.strip().lower()] = op.key
                members.append(
                    {
                        "email_address": email,
                        "status_if_new": "subscribed",
                        "merge_fields": {k: v for k, v in row.items() if k != self.email_field},
                    }
                )
            outcome = self.client.request("POST", self.list_path, {"members": members, "update_existing": True})
            attempts += outcome.attempts
            retries += outcome.attempts - 1
            keys = [op.key for op in batch.upsert_operations]
            codes.update({k: outcome.status for k in keys})
            if not outcome.ok:
                (failed if outcome.transient else rejected).update({k: outcome.reason() for k in keys})
            else:
                for error in (outcome.body or {}).get("errors", []):
                    key = by_email.get(str(error.get("email_address", "")).strip().lower())
                    if key is not None:
                        rejected[key] = f"{error.get('error_code', 'ERROR')}: {error.get('error')}"
        for op in batch.delete_operations:
            email = str(op.row.get(self.email_field) or "").strip().lower()
            if not email:  # the member id is the email's hash: without the email there is nothing to delete
                rejected[op.key] = (
                    f"no {self.email_field} in the row to delete: the tool finds members by their email "
                    "(the row as last sent is needed)"
                )
                continue
            subscriber = hashlib.md5(email.encode()).hexdigest()  # the tool's member id, not a security hash
            outcome = self.client.request("DELETE", f"{self.list_path}/members/{subscriber}")
            attempts += outcome.attempts
            retries += outcome.attempts - 1
            codes[op.key] = outcome.status
            if not outcome.ok and outcome.status != 404:
                (failed if outcome.transient else rejected)[op.key] = outcome.reason()
        return BatchResult(failed=failed, rejected=rejected, http_status=codes, attempts=attempts, retries=retries)

    def close(self) -> None:
        self.client.close()
