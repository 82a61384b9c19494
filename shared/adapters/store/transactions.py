"""Entity group transactions (`$batch`) sent without a thread pool per request.

azure-core prepares a multipart request by running each part's policies in a fresh
`ThreadPoolExecutor` (`Pipeline._prepare_multipart_mixed_request`, once for the batch and once
more for its changeset), and reads the answer's parts through another one (`_parts_helper`). For
the Tables SDK the only such policy is `StorageHeadersPolicy`, which sets a few headers on the way
out and does nothing on the way back, so each transaction started up to seven threads to set
headers. Measured on this machine (`bench/README.md`, issue 26): a 4-entity transaction cost
7.5 ms of CPU with the pools and 4.2 ms without; a transaction is 1 of the 2 table requests of
every payment event and of every email.

`SerialBatchTableClient._batch_send` is the SDK's own (azure-data-tables 12.7.0,
`TablesBaseClient._batch_send`, pinned in requirements.txt): the same request built by the same
SDK calls, the same body serializer, the same answer parser and errors; only the parts'
policies run in this thread, and the answer is split without the no-op pass. The contract
suite's transactions (tests/contract, on Azurite) run through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from uuid import uuid4

from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.data.tables import TableClient
from azure.data.tables._base_client import extract_batch_part_metadata as _sdk_part_metadata
from azure.data.tables._error import RequestTooLargeError, TableTransactionError
from azure.data.tables._error import _decode_error as _sdk_decode_error
from azure.data.tables._error import _validate_tablename_error as _sdk_validate_tablename_error
from azure.data.tables._policies import StorageHeadersPolicy

# The SDK's own helpers, untyped there.
_decode_error: Callable[..., Exception] = _sdk_decode_error
_validate_tablename_error: Callable[[Exception, str], None] = _sdk_validate_tablename_error
extract_batch_part_metadata: Callable[[Any], Mapping[str, Any]] = _sdk_part_metadata


def prepare_parts(request: HttpRequest) -> None:
    """Run the policies of every part of a multipart request (nested changesets first), in order,
    in this thread: what azure-core's `Pipeline._prepare_multipart_mixed_request` does in pools."""
    info = request.multipart_mixed_info
    if not info:
        return
    parts, policies, _boundary, options = info
    for part in parts:
        prepare_parts(part)
        pipeline_request: PipelineRequest[HttpRequest] = PipelineRequest(part, PipelineContext(None, **options))
        for policy in policies:
            policy.on_request(pipeline_request)


class SerialBatchTableClient(TableClient):
    """A `TableClient` whose transactions start no threads (see the module's docstring)."""

    def _batch_send(self, table_name: str, *reqs: HttpRequest, **kwargs: Any) -> list[Mapping[str, Any]]:
        policies = [StorageHeadersPolicy()]
        changeset = HttpRequest("POST", "")
        changeset.set_multipart_mixed(*reqs, policies=policies, boundary=f"changeset_{uuid4()}")
        request = HttpRequest(
            method="POST",
            url=f"{self.scheme}://{self._primary_hostname}/$batch",
            headers={
                "x-ms-version": self.api_version,
                "DataServiceVersion": "3.0",
                "MaxDataServiceVersion": "3.0;NetFx",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        request.set_multipart_mixed(changeset, policies=policies, enforce_https=False, boundary=f"batch_{uuid4()}")
        prepare_parts(request)
        request.prepare_multipart_body()
        # Sent as a plain request with its body ready: the pipeline has nothing left to prepare.
        mixed, request.multipart_mixed_info = request.multipart_mixed_info, None  # type: ignore[assignment]
        response = self._client.send_request(request, stream=True, **kwargs)
        response.request.multipart_mixed_info = mixed  # the answer's parts are read against it
        if response.status_code == 413:
            raise _decode_error(response, error_message="The transaction request was too large",
                                error_type=RequestTooLargeError)
        if response.status_code != 202:
            decoded = _decode_error(response)
            _validate_tablename_error(decoded, table_name)
            raise decoded
        parts = list(response._get_raw_parts())  # type: ignore[attr-defined]
        error_parts = [p for p in parts if not 200 <= p.status_code < 300]
        if error_parts:
            if error_parts[0].status_code == 413:
                raise _decode_error(response, error_message="The transaction request was too large",
                                    error_type=RequestTooLargeError)
            decoded = _decode_error(response=error_parts[0], error_type=TableTransactionError)
            _validate_tablename_error(decoded, table_name)
            raise decoded
        return [extract_batch_part_metadata(p) for p in parts]
