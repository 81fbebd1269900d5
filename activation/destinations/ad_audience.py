"""Ad audience (Customer Match / Custom Audiences style): membership of hashed identifiers.

Contract (modelled on the ad platforms' audience-members APIs):
  POST   <url>/v1/audiences/<audience_id>/users   add members
  DELETE <url>/v1/audiences/<audience_id>/users   remove members
  Authorization: Bearer <token>
  {"payload": {"schema": ["EMAIL_SHA256", "PHONE_SHA256"], "data": [["<hex>", "<hex>"], ...]},
   "session": {"session_id": ..., "batch_seq": n}}
  -> 200 {"audience_id": ..., "num_received": n, "num_invalid_entries": k,
          "invalid_entry_samples": {"<row index>": "<reason>"}}
Invalid entries are rejected rows with the platform's reason. Identifiers are normalized and SHA-256
hashed in the warehouse (activation/diff.py); rows with no usable identifier never get here (they are
`invalid`, and count in the match-rate denominator: matched / (sent + invalid))."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from activation.destinations import Batch, BatchResult, RowOperation
from activation.destinations.http import HttpClient, HttpPolicy
from activation.errors import ActivationError
from activation.spec import SyncSpec

SCHEMA_NAMES = {"email": "EMAIL_SHA256", "phone": "PHONE_SHA256"}


@dataclass
class AdAudienceDestination:
    sync_name: str
    client: HttpClient
    path: str
    fields: list[str]  # identifier fields, in schema order
    schema: list[str]
    policy: HttpPolicy

    @property
    def batch_size(self) -> int:
        return self.policy.batch_size

    @classmethod
    def from_settings(cls, spec: SyncSpec) -> AdAudienceDestination:
        unhashed = [name for name, item in spec.identifiers.items() if item.hash != "sha256"]
        if unhashed:
            raise ActivationError(
                f"sync {spec.name}: an ad_audience destination takes SHA-256 hashed identifiers only; "
                f"{', '.join(unhashed)} has hash: none. Set hash: sha256 in {spec.path}."
            )
        policy = HttpPolicy.from_spec(spec)
        token = spec.secret("token_env")
        client = HttpClient(spec.url(), policy, headers={"Authorization": f"Bearer {token}"})
        return cls(
            spec.name,
            client,
            f"/v1/audiences/{spec.setting('audience_id')}/users",
            list(spec.identifiers),
            [SCHEMA_NAMES[spec.identifiers[name].type] for name in spec.identifiers],
            policy,
        )

    def _call(self, method: str, operations: list[RowOperation], batch: Batch, result: dict) -> None:
        if not operations:
            return
        rows = [op.row for op in operations]
        payload = {
            "payload": {"schema": self.schema, "data": [[row.get(f) for f in self.fields] for row in rows]},
            "session": {"session_id": zlib.crc32(batch.run_id.encode()), "batch_seq": batch.number},
        }
        outcome = self.client.request(method, self.path, payload)
        result["attempts"] += outcome.attempts
        result["retries"] += outcome.attempts - 1
        keys = [op.key for op in operations]
        for key in keys:
            result["codes"][key] = outcome.status
        if not outcome.ok:
            (result["failed"] if outcome.transient else result["rejected"]).update({k: outcome.reason() for k in keys})
            return
        samples = (outcome.body or {}).get("invalid_entry_samples", {}) if isinstance(outcome.body, dict) else {}
        for index, reason in samples.items():
            if 0 <= int(index) < len(keys):
                result["rejected"][keys[int(index)]] = f"invalid entry: {reason}"

    def send(self, batch: Batch) -> BatchResult:
        result: dict = {"failed": {}, "rejected": {}, "codes": {}, "attempts": 0, "retries": 0}
        # Membership: an added or changed row adds its (new) identifiers; a removed one removes the
        # identifiers as last sent.
        self._call("POST", batch.upsert_operations, batch, result)
        self._call("DELETE", batch.delete_operations, batch, result)
        return BatchResult(
            failed=result["failed"],
            rejected=result["rejected"],
            http_status=result["codes"],
            attempts=result["attempts"],
            retries=result["retries"],
        )

    def close(self) -> None:
        self.client.close()
