"""Bedrock error codes mapped onto the one error tree, with request id, status and cause kept."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from crossmodal_search._aws import RetryPolicy
from crossmodal_search.embeddings import NovaEmbeddings
from crossmodal_search.errors import (
    AccessDeniedError,
    CrossmodalSearchError,
    InvalidInputError,
    ResourceNotFoundError,
    RetryExhaustedError,
    ServiceError,
    ServiceValidationError,
    TransientServiceError,
    UnsupportedMediaError,
)
from crossmodal_search.testing import FakeBedrock
from crossmodal_search.testing._bedrock import ERROR_STATUS
from tests.embeddings_helpers import nova

# AWS code -> (our class, HTTP status the service uses)
MAPPING: list[tuple[str, type[ServiceError], int]] = [
    ("ThrottlingException", TransientServiceError, 429),
    ("ModelNotReadyException", TransientServiceError, 429),
    ("ServiceUnavailableException", TransientServiceError, 503),
    ("InternalServerException", TransientServiceError, 500),
    ("ModelTimeoutException", TransientServiceError, 408),
    ("ValidationException", ServiceValidationError, 400),
    ("ServiceQuotaExceededException", ServiceValidationError, 400),
    ("AccessDeniedException", AccessDeniedError, 403),
    ("UnrecognizedClientException", AccessDeniedError, 403),
    ("ResourceNotFoundException", ResourceNotFoundError, 404),
    ("ModelErrorException", ServiceError, 424),
]


def test_mapping_table_covers_every_fake_error_code() -> None:
    assert {code for code, _, _ in MAPPING} == set(ERROR_STATUS)


@pytest.mark.parametrize(("code", "cls", "status"), MAPPING)
def test_error_code_maps_to_our_class(code: str, cls: type[ServiceError], status: int) -> None:
    emb, fake = nova(retry_policy=RetryPolicy(max_attempts=1))
    fake.fail_next(code, message=f"boom {code}")
    with pytest.raises(ServiceError) as info:
        emb.embed_text("a")
    err = info.value
    if cls is TransientServiceError:  # one attempt allowed: retries are exhausted at once
        assert isinstance(err, RetryExhaustedError) and err.attempts == 1
        err = err.last_error
    assert type(err) is cls
    assert err.code == code
    assert err.status_code == status
    assert err.operation == "InvokeModel"
    assert f"boom {code}" in str(err) and code in str(err)
    cause = err.__cause__
    assert isinstance(cause, ClientError)
    assert cause.response["Error"]["Code"] == code
    assert err.request_id and err.request_id == cause.response["ResponseMetadata"]["RequestId"]
    assert isinstance(err, CrossmodalSearchError)


def test_retry_exhausted_keeps_the_last_request_id() -> None:
    emb, fake = nova(retry_policy=RetryPolicy(max_attempts=2, sleep=lambda _: None))
    fake.fail_always("InternalServerException")
    with pytest.raises(RetryExhaustedError) as info:
        emb.embed_text("a")
    assert info.value.request_id == info.value.last_error.request_id is not None
    assert info.value.status_code == 500


def test_unknown_error_code_falls_through_to_service_error() -> None:
    emb, fake = nova()
    fake.fail_next("BrandNewException")  # not in the table: status 400 as the fake's default
    with pytest.raises(ServiceValidationError) as info:
        emb.embed_text("a")
    assert info.value.code == "BrandNewException"


def test_no_credentials_is_access_denied_without_network() -> None:
    emb = NovaEmbeddings(region_name="us-east-1")
    with pytest.raises(AccessDeniedError, match="no AWS credentials") as info:
        emb.embed_text("a")
    assert info.value.code == "NoCredentials"
    assert emb.calls == 1  # attempted once, never retried


def test_wrong_model_id_is_a_validation_error() -> None:
    emb, fake = nova(model_id="amazon.titan-embed-text-v2:0")
    with pytest.raises(ServiceValidationError, match="model identifier"):
        emb.embed_text("a")
    assert fake.calls == 1


def test_input_errors_are_value_errors_and_in_the_tree() -> None:
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(UnsupportedMediaError, InvalidInputError)
    emb, _ = nova()
    with pytest.raises(ValueError, match="empty"):
        emb.embed_text("")


def test_fake_client_rejects_bad_body_like_the_service() -> None:
    fake = FakeBedrock()
    client = fake.client()
    with pytest.raises(ClientError) as info:
        client.invoke_model(
            modelId="amazon.nova-2-multimodal-embeddings-v1:0",
            body=b'{"taskType":"SINGLE_EMBEDDING","extra":1}',
        )
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
