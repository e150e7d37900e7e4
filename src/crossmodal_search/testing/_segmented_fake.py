"""The async-invoke half of FakeBedrockJobs: ``StartAsyncInvoke`` / ``GetAsyncInvoke``.

A ``SEGMENTED_EMBEDDING`` job is validated when it starts and, once its scripted polls are
over, "runs": it reads the source from S3, cuts it into segments (text at word boundaries,
declared media by their length) and writes the files Nova writes::

    <s3Uri>/<job id>/segmented-embedding-result.json, embedding-<modality>.jsonl, manifest.json
"""

from __future__ import annotations

import json
import math
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crossmodal_search._aws import join_s3
from crossmodal_search.testing._jobs_common import EPOCH, JobsBase
from crossmodal_search.testing._nova_schema import (
    AUDIO_FORMATS,
    PURPOSES,
    S3_URI,
    SCHEMA_VERSION,
    VIDEO_FORMATS,
    VIDEO_MODES,
    Invalid,
    check_dimension,
    enum,
    one_modality,
)

if TYPE_CHECKING:
    from botocore.awsrequest import AWSPreparedRequest, AWSResponse

__all__ = ["AsyncJobScript", "FakeMedia", "SegmentedJobsFake", "split_text"]

#: One segment: ``(start, end, what it shows or says)``.
_Span = tuple[float, float, str]


@dataclass(frozen=True)
class FakeMedia:
    """A long audio or video object the fake can "segment".

    ``describe(start, end)`` says what happens in a segment; the fake embeds that text as the
    segment's vector (with the fake's embedder), so a text query about it finds the segment.
    """

    duration_seconds: float
    describe: Callable[[float, float], str] | None = None
    texts: tuple[str, ...] = ()

    def segment_text(self, index: int, start: float, end: float) -> str:
        """What segment ``index`` (``start``-``end`` seconds) shows."""
        if self.texts:
            return self.texts[min(index, len(self.texts) - 1)]
        if self.describe is not None:
            return self.describe(start, end)
        return f"media from {start:g} to {end:g} seconds"


@dataclass(frozen=True, kw_only=True)
class AsyncJobScript:
    """How the next async job behaves.

    Attributes:
        polls_until_done: ``GetAsyncInvoke`` answers ``InProgress`` this many times first.
        never_finishes: always ``InProgress``.
        fail_job: the job ends ``Failed`` with this ``failureMessage``.
        failed_segments: segment index -> ``failureReason`` (the output becomes
            ``PARTIAL_SUCCESS``; every segment failed makes it a failure).
        failure_status: the status string failed segments/outputs get (``"FAILURE"`` as
            documented, or ``"FAILED"``).
        fail_output: this ``failureReason`` fails the whole output: no JSONL file at all.
        output_uri_includes_job_id: ``GetAsyncInvoke`` reports ``<s3Uri>/<job id>``.
    """

    polls_until_done: int = 1
    never_finishes: bool = False
    fail_job: str | None = None
    failed_segments: Mapping[int, str] = field(default_factory=dict)
    failure_status: str = "FAILURE"
    fail_output: str | None = None
    output_uri_includes_job_id: bool = False


@dataclass
class _AsyncJob:
    arn: str
    job_id: str
    model_input: dict[str, Any]
    output_uri: str
    script: AsyncJobScript
    polls: int = 0
    status: str = "InProgress"
    failure_message: str | None = None
    written: bool = False


@dataclass(frozen=True)
class _Output:
    """One output of a job: its embedding type, JSONL file name, segments and position keys."""

    embedding_type: str
    file_name: str
    spans: list[_Span]
    start_key: str
    end_key: str


def split_text(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Greedy word-boundary segmentation: ``[(start, end_exclusive), ...]`` covering ``text``."""
    spans: list[tuple[int, int]] = []
    start, n = 0, len(text)
    while start < n:
        end = min(start + max_chars, n)
        if end < n:
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            if cut > start:
                end = cut
        spans.append((start, end))
        start = end
        while start < n and text[start].isspace():
            start += 1
    return spans


def _validate_segmented(mi: dict[str, Any]) -> None:
    """A ``modelInput`` StartAsyncInvoke accepts, else :class:`Invalid`."""
    allowed = {"schemaVersion", "taskType", "segmentedEmbeddingParams"}
    if set(mi) - allowed:
        raise Invalid(f"modelInput: extraneous key(s) {sorted(set(mi) - allowed)}")
    if mi.get("schemaVersion", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise Invalid("modelInput.schemaVersion invalid")
    if mi.get("taskType") != "SEGMENTED_EMBEDDING":
        raise Invalid("taskType must be SEGMENTED_EMBEDDING for StartAsyncInvoke")
    params = mi.get("segmentedEmbeddingParams")
    if not isinstance(params, dict):
        raise Invalid("segmentedEmbeddingParams is required")
    where = "segmentedEmbeddingParams"
    enum(params.get("embeddingPurpose"), PURPOSES, f"{where}/embeddingPurpose")
    check_dimension(params, where)
    modality = one_modality(params, where)
    spec = params[modality]
    if not isinstance(spec, dict):
        raise Invalid(f"{modality} must be an object")
    src = spec.get("source")
    loc = src.get("s3Location") if isinstance(src, dict) else None
    if not isinstance(loc, dict) or not S3_URI.match(str(loc.get("uri", ""))):
        raise Invalid(f"{modality}.source: async accepts only s3Location sources")
    seg = spec.get("segmentationConfig")
    if modality == "image":
        raise Invalid("the fake does not segment images")
    if modality == "text":
        if spec.get("truncationMode") not in ("START", "END", "NONE"):
            raise Invalid("text.truncationMode required")
        n = seg.get("maxLengthChars") if isinstance(seg, dict) else None
        if not isinstance(n, int) or not 800 <= n <= 50_000:
            raise Invalid(f"text.segmentationConfig.maxLengthChars must be 800-50000: {n!r}")
        return
    formats = AUDIO_FORMATS if modality == "audio" else VIDEO_FORMATS
    if spec.get("format") not in formats:
        raise Invalid(f"{modality}.format invalid: {spec.get('format')!r}")
    n = seg.get("durationSeconds") if isinstance(seg, dict) else None
    if not isinstance(n, int) or not 1 <= n <= 30:
        raise Invalid(f"{modality}.segmentationConfig.durationSeconds must be 1-30: {n!r}")
    if modality == "video" and spec.get("embeddingMode") not in VIDEO_MODES:
        raise Invalid("video.embeddingMode required")


class SegmentedJobsFake(JobsBase):
    """``StartAsyncInvoke`` and ``GetAsyncInvoke`` of FakeBedrockJobs."""

    media: dict[str, FakeMedia]
    async_jobs: dict[str, _AsyncJob]
    _async_scripts: deque[AsyncJobScript]

    def _start_async(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("modelId") != self.model_id:
            raise Invalid(f"The provided model identifier is invalid: {body.get('modelId')!r}")
        model_input = body.get("modelInput")
        if not isinstance(model_input, dict):
            raise Invalid("modelInput must be a JSON object")
        _validate_segmented(model_input)
        out = (body.get("outputDataConfig") or {}).get("s3OutputDataConfig") or {}
        uri = out.get("s3Uri")
        if not isinstance(uri, str) or not S3_URI.match(uri):
            raise Invalid(f"outputDataConfig.s3OutputDataConfig.s3Uri invalid: {uri!r}")
        job_id = secrets.token_hex(6)
        arn = self._arn("async-invoke", job_id)
        with self._lock:
            script = self._async_scripts.popleft() if self._async_scripts else AsyncJobScript()
            self.async_jobs[arn] = _AsyncJob(arn, job_id, model_input, uri, script)
        return {"invocationArn": arn}

    def _get_async(self, request: AWSPreparedRequest, arn: str) -> AWSResponse:
        with self._lock:
            job = self.async_jobs.get(arn)
            if job is None:
                return self._error(request, "ValidationException", f"Invalid invocation ARN {arn}")
            job.polls += 1
            script = job.script
            if (
                job.status == "InProgress"
                and not script.never_finishes
                and job.polls > script.polls_until_done
            ):
                if script.fail_job is not None:
                    job.status, job.failure_message = "Failed", script.fail_job
                else:
                    problem = self._run_async(job)
                    if problem is None:
                        job.status = "Completed"
                    else:
                        job.status, job.failure_message = "Failed", problem
            out_uri = job.output_uri
            if script.output_uri_includes_job_id:
                out_uri = join_s3(out_uri, job.job_id)
            payload: dict[str, Any] = {
                "invocationArn": arn,
                "modelArn": f"arn:aws:bedrock:{self.region_name}::foundation-model/{self.model_id}",
                "status": job.status,
                "submitTime": EPOCH.isoformat(),
                "lastModifiedTime": EPOCH.isoformat(),
                "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": out_uri}},
            }
            if job.failure_message:
                payload["failureMessage"] = job.failure_message
            if job.status != "InProgress":
                payload["endTime"] = EPOCH.isoformat()
        return self._response(request, 200, payload, None)

    def _media_segments(self, uri: str, seconds: int) -> list[_Span]:
        media = self.media[uri]
        count = math.ceil(media.duration_seconds / seconds)
        out: list[_Span] = []
        for i in range(count):
            start, end = float(i * seconds), min(float((i + 1) * seconds), media.duration_seconds)
            out.append((start, end, media.segment_text(i, start, end)))
        return out

    def _outputs(self, modality: str, spec: dict[str, Any], data: bytes) -> list[_Output] | str:
        """What the job writes, one entry per output; a failure message when it cannot."""
        source = spec["source"]["s3Location"]["uri"]
        if modality == "text":
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                return "INVALID_CONTENT: the text file is not UTF-8"
            spans = split_text(text, int(spec["segmentationConfig"]["maxLengthChars"]))
            segs = [(float(a), float(b), text[a:b]) for a, b in spans]
            keys = ("segmentStartCharPosition", "segmentEndCharPosition")
            return [_Output("TEXT", "embedding-text.jsonl", segs, *keys)]
        if source not in self.media:
            return f"INVALID_CONTENT: unreadable {modality} {source} (not declared to the fake)"
        segs = self._media_segments(source, int(spec["segmentationConfig"]["durationSeconds"]))
        keys = ("segmentStartSeconds", "segmentEndSeconds")
        if modality == "audio":
            return [_Output("AUDIO", "embedding-audio.jsonl", segs, *keys)]
        if spec["embeddingMode"] == "AUDIO_VIDEO_COMBINED":
            # The blog reads this name; the docs list none for combined embeddings.
            return [_Output("AUDIO_VIDEO_COMBINED", "embedding-audio-video.jsonl", segs, *keys)]
        audio = [(a, b, f"sound of {d}") for a, b, d in segs]
        return [
            _Output("VIDEO", "embedding-video.jsonl", segs, *keys),
            _Output("AUDIO", "embedding-audio.jsonl", audio, *keys),
        ]

    def _write_output(
        self, job: _AsyncJob, output: _Output, *, folder: str, dim: int, chars: bool
    ) -> dict[str, Any]:
        """Write one output's JSONL (honouring the script's failures); its result entry."""
        script = job.script
        lines: list[dict[str, Any]] = []
        failed = 0
        for i, (start, end, content) in enumerate(output.spans):
            position = (int(start), int(end)) if chars else (start, end)
            meta = {"segmentIndex": i, output.start_key: position[0], output.end_key: position[1]}
            reason = script.failed_segments.get(i)
            if reason is None:
                vector = self._vector(content, dim)
                lines.append({"embedding": vector, "segmentMetadata": meta, "status": "SUCCESS"})
                continue
            failed += 1
            lines.append(
                {
                    "segmentMetadata": meta,
                    "status": script.failure_status,
                    "failureReason": reason,
                    "message": f"segment {i} was not embedded",
                }
            )
        uri = join_s3(folder, output.file_name)
        self._write(
            uri, "\n".join(json.dumps(x) for x in lines).encode() + b"\n", "application/jsonl"
        )
        if not failed:
            status = "SUCCESS"
        else:
            status = script.failure_status if failed == len(output.spans) else "PARTIAL_SUCCESS"
        return {"embeddingType": output.embedding_type, "status": status, "outputFileUri": uri}

    def _run_async(self, job: _AsyncJob) -> str | None:
        """Write the job's result files; returns a failure message instead when it cannot."""
        params = job.model_input["segmentedEmbeddingParams"]
        dim = int(params.get("embeddingDimension", 3072))
        modality = next(m for m in ("text", "audio", "video") if m in params)
        source = params[modality]["source"]["s3Location"]["uri"]
        data = self._read(source)
        if data is None:
            return f"Unable to access the input file: {source}"
        outputs = self._outputs(modality, params[modality], data)
        if isinstance(outputs, str):
            return outputs
        folder = join_s3(job.output_uri, job.job_id)
        fail_output = job.script.fail_output
        results = [
            {
                "embeddingType": output.embedding_type,
                "status": job.script.failure_status,
                "failureReason": fail_output,
                "message": f"{output.embedding_type} embedding failed",
            }
            if fail_output is not None
            else self._write_output(job, output, folder=folder, dim=dim, chars=modality == "text")
            for output in outputs
        ]
        result = {"sourceFileUri": source, "embeddingDimension": dim, "embeddingResults": results}
        manifest = {"invocationArn": job.arn, "modelInput": job.model_input}
        for name, doc in (("segmented-embedding-result.json", result), ("manifest.json", manifest)):
            self._write(join_s3(folder, name), json.dumps(doc).encode(), "application/json")
        job.written = True
        return None
