"""The resources ``FakeS3Vectors`` keeps (buckets, indexes, tags) and the handler of each
S3 Vectors operation; vector operations are in ``_s3vectors_data``, modes, text search
configurations and queries in ``_s3vectors_text``. Called under the fake's lock."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from crossmodal_search.testing import _s3vectors_data as data
from crossmodal_search.testing import _s3vectors_text as text
from crossmodal_search.testing._s3vectors_model import (
    ENHANCED_BUCKETS_SINCE,
    MAX_DIMENSION,
    MAX_NON_FILTERABLE_KEYS,
    MAX_TAGS,
    Bucket,
    Index,
    ServiceError,
    validation,
)

__all__ = ["Resources", "Settings"]

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_INDEX_ARN = re.compile(
    r"^arn:aws[-a-z0-9]*:s3vectors:[a-z0-9-]+:[0-9]{12}:bucket/([^/]+)/index/([^/]+)$"
)
_BUCKET_ARN = re.compile(r"^arn:aws[-a-z0-9]*:s3vectors:[a-z0-9-]+:[0-9]{12}:bucket/([^/]+)$")


class Settings(Protocol):
    """What the resources read from the fake at each call (tests may change it between calls)."""

    region: str
    account_id: str
    wall_clock: Callable[[], float]
    query_page_size: int | None


class Resources:
    """Buckets and indexes of one fake, and the handlers that read and change them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.buckets: dict[str, Bucket] = {}
        #: New text search configurations stay BUILDING while this is set.
        self.hold_builds = False
        self.handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "CreateVectorBucket": self._create_vector_bucket,
            "GetVectorBucket": self._get_vector_bucket,
            "PutVectorBucketDefaultIndexMode": self._put_vector_bucket_default_index_mode,
            "ListVectorBuckets": self._list_vector_buckets,
            "DeleteVectorBucket": self._delete_vector_bucket,
            "CreateIndex": self._create_index,
            "GetIndex": self._get_index,
            "ListIndexes": self._list_indexes,
            "DeleteIndex": self._delete_index,
            "UpdateIndexMode": self._update_index_mode,
            "UpdateMetadataConfiguration": self._update_metadata_configuration,
            "PutVectors": self._put_vectors,
            "GetVectors": self._get_vectors,
            "ListVectors": self._list_vectors,
            "DeleteVectors": self._delete_vectors,
            "QueryVectors": self._query_vectors,
            "TagResource": self._tag_resource,
            "UntagResource": self._untag_resource,
            "ListTagsForResource": self._list_tags_for_resource,
        }

    # -- addressing -----------------------------------------------------------------------------

    def _bucket_arn(self, name: str) -> str:
        settings = self._settings
        return f"arn:aws:s3vectors:{settings.region}:{settings.account_id}:bucket/{name}"

    def _bucket(self, params: Mapping[str, Any]) -> Bucket:
        name = params.get("vectorBucketName")
        arn = params.get("vectorBucketArn")
        if (name is None) == (arn is None):
            raise validation("Must specify either vectorBucketName or vectorBucketArn")
        if arn is not None:
            match = _BUCKET_ARN.match(str(arn))
            if match is None:
                raise validation(f"Invalid vectorBucketArn: {arn}")
            name = match.group(1)
        bucket = self.buckets.get(str(name))
        if bucket is None:
            raise ServiceError("NotFoundException", f"Vector bucket {name} does not exist")
        return bucket

    def _index(self, params: Mapping[str, Any]) -> Index:
        arn = params.get("indexArn")
        if arn is not None:
            if "vectorBucketName" in params or "indexName" in params:
                raise validation(
                    "Must specify either indexArn or both vectorBucketName and indexName"
                )
            match = _INDEX_ARN.match(str(arn))
            if match is None:
                raise validation(f"Invalid indexArn: {arn}")
            bucket_name, index_name = match.group(1), match.group(2)
        else:
            if "vectorBucketName" not in params or "indexName" not in params:
                raise validation(
                    "Must specify either indexArn or both vectorBucketName and indexName"
                )
            bucket_name, index_name = str(params["vectorBucketName"]), str(params["indexName"])
        bucket = self.buckets.get(bucket_name)
        if bucket is None:
            raise ServiceError("NotFoundException", f"Vector bucket {bucket_name} does not exist")
        index = bucket.indexes.get(index_name)
        if index is None:
            raise ServiceError(
                "NotFoundException", f"Index {index_name} does not exist in bucket {bucket_name}"
            )
        return index

    # -- buckets --------------------------------------------------------------------------------

    def _create_vector_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        name = str(params.get("vectorBucketName", ""))
        if not _BUCKET_NAME.match(name):
            raise validation(
                f"Invalid vector bucket name {name!r}: 3-63 characters of a-z, 0-9 and '-', "
                "starting and ending with a letter or digit"
            )
        if name in self.buckets:
            raise ServiceError("ConflictException", f"Vector bucket {name} already exists")
        tags = self._check_tags(params.get("tags", {}))
        created = float(self._settings.wall_clock())
        mode = "ENHANCED" if created >= ENHANCED_BUCKETS_SINCE else "CLASSIC"
        bucket = Bucket(name, self._bucket_arn(name), created, default_mode=mode, tags=tags)
        self.buckets[name] = bucket
        return {"vectorBucketArn": bucket.arn}

    def _get_vector_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        return {
            "vectorBucket": {
                "vectorBucketName": bucket.name,
                "vectorBucketArn": bucket.arn,
                "creationTime": bucket.creation_time,
                "encryptionConfiguration": {"sseType": "AES256"},
                "defaultIndexMode": bucket.default_mode,
            }
        }

    def _list_vector_buckets(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = str(params.get("prefix", ""))
        names = sorted(n for n in self.buckets if n.startswith(prefix))
        page, token = self._paginate(names, params, max_results=500)
        return {
            "vectorBuckets": [
                {
                    "vectorBucketName": n,
                    "vectorBucketArn": self.buckets[n].arn,
                    "creationTime": self.buckets[n].creation_time,
                }
                for n in page
            ],
            **({"nextToken": token} if token else {}),
        }

    def _delete_vector_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        if bucket.indexes:
            raise ServiceError(
                "ConflictException", f"Vector bucket {bucket.name} is not empty: delete its indexes"
            )
        del self.buckets[bucket.name]
        return {}

    # -- indexes --------------------------------------------------------------------------------

    def _create_index(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        name = str(params.get("indexName", ""))
        if not _INDEX_NAME.match(name):
            raise validation(
                f"Invalid index name {name!r}: 3-63 characters of a-z, 0-9, '-' and '.', "
                "starting and ending with a letter or digit"
            )
        dimension = params.get("dimension")
        if not isinstance(dimension, int) or not 1 <= dimension <= MAX_DIMENSION:
            raise validation(f"dimension must be between 1 and {MAX_DIMENSION}")
        metric = params.get("distanceMetric")
        if metric not in ("cosine", "euclidean"):
            raise validation("distanceMetric must be 'cosine' or 'euclidean'")
        if params.get("dataType") != "float32":
            raise validation("dataType must be 'float32'")
        config = params.get("metadataConfiguration") or {}
        non_filterable = list(config.get("nonFilterableMetadataKeys", []))
        if len(non_filterable) > MAX_NON_FILTERABLE_KEYS:
            raise validation(
                f"nonFilterableMetadataKeys has {len(non_filterable)} keys; "
                f"the maximum is {MAX_NON_FILTERABLE_KEYS}"
            )
        for key in non_filterable:
            if not isinstance(key, str) or not 1 <= len(key) <= 63:
                raise validation(f"Invalid non-filterable metadata key {key!r}")
        if len(set(non_filterable)) != len(non_filterable):
            raise validation("nonFilterableMetadataKeys contains duplicates")
        text_configs = text.create_text_configs(config, bucket.default_mode)
        if name in bucket.indexes:
            raise ServiceError(
                "ConflictException", f"Index {name} already exists in bucket {bucket.name}"
            )
        index = Index(
            bucket=bucket.name,
            name=name,
            arn=f"{bucket.arn}/index/{name}",
            dimension=dimension,
            distance_metric=str(metric),
            non_filterable=tuple(non_filterable),
            creation_time=float(self._settings.wall_clock()),
            mode=bucket.default_mode,
            tags=self._check_tags(params.get("tags", {})),
        )
        for key, text_config in text_configs.items():
            index.add_text(key, text_config)
        bucket.indexes[name] = index
        return {"indexArn": index.arn}

    def _get_index(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        description: dict[str, Any] = {
            "vectorBucketName": index.bucket,
            "indexName": index.name,
            "indexArn": index.arn,
            "creationTime": index.creation_time,
            "dataType": "float32",
            "dimension": index.dimension,
            "distanceMetric": index.distance_metric,
            "encryptionConfiguration": {"sseType": "AES256"},
            "indexMode": index.mode,
        }
        metadata_configuration = text.metadata_configuration(index)
        if metadata_configuration is not None:
            description["metadataConfiguration"] = metadata_configuration
        return {"index": description}

    def _list_indexes(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        prefix = str(params.get("prefix", ""))
        names = sorted(n for n in bucket.indexes if n.startswith(prefix))
        page, token = self._paginate(names, params, max_results=500)
        return {
            "indexes": [
                {
                    "vectorBucketName": bucket.name,
                    "indexName": n,
                    "indexArn": bucket.indexes[n].arn,
                    "creationTime": bucket.indexes[n].creation_time,
                }
                for n in page
            ],
            **({"nextToken": token} if token else {}),
        }

    def _delete_index(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        del self.buckets[index.bucket].indexes[index.name]
        return {}

    def _put_vector_bucket_default_index_mode(self, params: dict[str, Any]) -> dict[str, Any]:
        return text.put_default_index_mode(self._bucket(params), params)

    def _update_index_mode(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        return text.update_index_mode(self.buckets[index.bucket], index, params)

    def _update_metadata_configuration(self, params: dict[str, Any]) -> dict[str, Any]:
        return text.update_metadata_configuration(
            self._index(params), params, hold=self.hold_builds
        )

    # -- vectors --------------------------------------------------------------------------------

    def _put_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        return data.put_vectors(self._index(params), params)

    def _get_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        return data.get_vectors(self._index(params), params)

    def _list_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        return data.list_vectors(self._index(params), params)

    def _delete_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        return data.delete_vectors(self._index(params), params)

    def _query_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = text.query_vectors(
            self._index(params), params, page_size=self._settings.query_page_size
        )
        return response

    # -- tags -----------------------------------------------------------------------------------

    def _tagged(self, arn: object) -> Bucket | Index:
        text = str(arn)
        index = _INDEX_ARN.match(text)
        if index is not None:
            return self._index({"indexArn": text})
        if _BUCKET_ARN.match(text) is None:
            raise validation(f"Invalid resourceArn: {text}")
        return self._bucket({"vectorBucketArn": text})

    @staticmethod
    def _check_tags(tags: object) -> dict[str, str]:
        if not isinstance(tags, dict):
            raise validation("tags must be a map of strings")
        if len(tags) > MAX_TAGS:
            raise validation(f"{len(tags)} tags; a resource has at most {MAX_TAGS}")
        for k, v in tags.items():
            if not isinstance(k, str) or not 1 <= len(k) <= 128:
                raise validation(f"Tag keys must be 1 to 128 characters: {k!r}")
            if not isinstance(v, str) or len(v) > 256:
                raise validation(f"Tag values must be at most 256 characters: {v!r}")
        return dict(tags)

    def _tag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        resource = self._tagged(params.get("resourceArn"))
        merged = {**resource.tags, **self._check_tags(params.get("tags", {}))}
        resource.tags = self._check_tags(merged)
        return {}

    def _untag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        resource = self._tagged(params.get("resourceArn"))
        for key in params.get("tagKeys", []):
            resource.tags.pop(key, None)
        return {}

    def _list_tags_for_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"tags": dict(self._tagged(params.get("resourceArn")).tags)}

    # -- pagination -----------------------------------------------------------------------------

    @staticmethod
    def _paginate(
        names: list[str], params: Mapping[str, Any], *, max_results: int
    ) -> tuple[list[str], str | None]:
        limit = int(params.get("maxResults", max_results))
        if not 1 <= limit <= max_results:
            raise validation(f"maxResults must be between 1 and {max_results}")
        after = data.page_after(params.get("nextToken"), (None, None))
        if after is not None:
            names = [n for n in names if n > after]
        page = names[:limit]
        token = data.resume_token(page[-1], (None, None)) if len(names) > limit else None
        return page, token
