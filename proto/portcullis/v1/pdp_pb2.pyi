from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    ALLOW: _ClassVar[Verdict]
    DENY: _ClassVar[Verdict]
    MASK: _ClassVar[Verdict]
    REQUIRE_APPROVAL: _ClassVar[Verdict]

class CacheKey(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_KEY_UNSPECIFIED: _ClassVar[CacheKey]
    EXACT: _ClassVar[CacheKey]
    SHAPE: _ClassVar[CacheKey]
VERDICT_UNSPECIFIED: Verdict
ALLOW: Verdict
DENY: Verdict
MASK: Verdict
REQUIRE_APPROVAL: Verdict
CACHE_KEY_UNSPECIFIED: CacheKey
EXACT: CacheKey
SHAPE: CacheKey

class Connection(_message.Message):
    __slots__ = ("name", "type", "zone", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    zone: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., zone: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class MaskRule(_message.Message):
    __slots__ = ("field", "detector", "strategy", "derived", "positions", "outputs")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    DERIVED_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    field: str
    detector: str
    strategy: str
    derived: bool
    positions: _containers.RepeatedScalarFieldContainer[int]
    outputs: int
    def __init__(self, field: _Optional[str] = ..., detector: _Optional[str] = ..., strategy: _Optional[str] = ..., derived: _Optional[bool] = ..., positions: _Optional[_Iterable[int]] = ..., outputs: _Optional[int] = ...) -> None: ...

class ApprovalSpec(_message.Message):
    __slots__ = ("approvers", "ttl_seconds")
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    approvers: _containers.RepeatedScalarFieldContainer[str]
    ttl_seconds: int
    def __init__(self, approvers: _Optional[_Iterable[str]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("decision_id", "verdict", "reasons", "mask", "approval", "credential_ref", "cache_ttl_seconds", "cache_key", "policy_revision", "evaluation_ms", "approval_id", "session_settings", "effects", "rewritten", "egress_budget", "egress_rows_left", "egress_bytes_left", "rewrite_shape", "rewrite_template", "rewrite_fingerprint", "reuse_bounded", "reuses_left")
    class SessionSettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_REF_FIELD_NUMBER: _ClassVar[int]
    CACHE_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CACHE_KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_MS_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    EFFECTS_FIELD_NUMBER: _ClassVar[int]
    REWRITTEN_FIELD_NUMBER: _ClassVar[int]
    EGRESS_BUDGET_FIELD_NUMBER: _ClassVar[int]
    EGRESS_ROWS_LEFT_FIELD_NUMBER: _ClassVar[int]
    EGRESS_BYTES_LEFT_FIELD_NUMBER: _ClassVar[int]
    REWRITE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    REWRITE_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    REWRITE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    REUSE_BOUNDED_FIELD_NUMBER: _ClassVar[int]
    REUSES_LEFT_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    verdict: Verdict
    reasons: _containers.RepeatedScalarFieldContainer[str]
    mask: _containers.RepeatedCompositeFieldContainer[MaskRule]
    approval: ApprovalSpec
    credential_ref: str
    cache_ttl_seconds: int
    cache_key: CacheKey
    policy_revision: str
    evaluation_ms: float
    approval_id: str
    session_settings: _containers.ScalarMap[str, str]
    effects: _containers.RepeatedScalarFieldContainer[str]
    rewritten: str
    egress_budget: bool
    egress_rows_left: int
    egress_bytes_left: int
    rewrite_shape: str
    rewrite_template: str
    rewrite_fingerprint: str
    reuse_bounded: bool
    reuses_left: int
    def __init__(self, decision_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., reasons: _Optional[_Iterable[str]] = ..., mask: _Optional[_Iterable[_Union[MaskRule, _Mapping]]] = ..., approval: _Optional[_Union[ApprovalSpec, _Mapping]] = ..., credential_ref: _Optional[str] = ..., cache_ttl_seconds: _Optional[int] = ..., cache_key: _Optional[_Union[CacheKey, str]] = ..., policy_revision: _Optional[str] = ..., evaluation_ms: _Optional[float] = ..., approval_id: _Optional[str] = ..., session_settings: _Optional[_Mapping[str, str]] = ..., effects: _Optional[_Iterable[str]] = ..., rewritten: _Optional[str] = ..., egress_budget: _Optional[bool] = ..., egress_rows_left: _Optional[int] = ..., egress_bytes_left: _Optional[int] = ..., rewrite_shape: _Optional[str] = ..., rewrite_template: _Optional[str] = ..., rewrite_fingerprint: _Optional[str] = ..., reuse_bounded: _Optional[bool] = ..., reuses_left: _Optional[int] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("subject", "groups", "issuer", "token_id", "expires_at")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    subject: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    issuer: str
    token_id: str
    expires_at: int
    def __init__(self, subject: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., issuer: _Optional[str] = ..., token_id: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class OpenSessionRequest(_message.Message):
    __slots__ = ("token", "connection", "client_addr", "client", "attributes", "session_id", "session_key")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    token: str
    connection: Connection
    client_addr: str
    client: str
    attributes: _struct_pb2.Struct
    session_id: str
    session_key: str
    def __init__(self, token: _Optional[str] = ..., connection: _Optional[_Union[Connection, _Mapping]] = ..., client_addr: _Optional[str] = ..., client: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., session_id: _Optional[str] = ..., session_key: _Optional[str] = ...) -> None: ...

class OpenSessionResponse(_message.Message):
    __slots__ = ("session_id", "decision", "identity", "session_expires_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    SESSION_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    decision: Decision
    identity: Identity
    session_expires_at: float
    def __init__(self, session_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., identity: _Optional[_Union[Identity, _Mapping]] = ..., session_expires_at: _Optional[float] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("kind", "raw", "attributes", "full_bytes", "full_sha256")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    FULL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FULL_SHA256_FIELD_NUMBER: _ClassVar[int]
    kind: str
    raw: str
    attributes: _struct_pb2.Struct
    full_bytes: int
    full_sha256: str
    def __init__(self, kind: _Optional[str] = ..., raw: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., full_bytes: _Optional[int] = ..., full_sha256: _Optional[str] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("session_id", "command", "timeout_ms", "egress_rows", "egress_bytes", "reused", "session_key")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    EGRESS_ROWS_FIELD_NUMBER: _ClassVar[int]
    EGRESS_BYTES_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    command: Command
    timeout_ms: int
    egress_rows: int
    egress_bytes: int
    reused: _containers.RepeatedCompositeFieldContainer[ReusedVerdict]
    session_key: str
    def __init__(self, session_id: _Optional[str] = ..., command: _Optional[_Union[Command, _Mapping]] = ..., timeout_ms: _Optional[int] = ..., egress_rows: _Optional[int] = ..., egress_bytes: _Optional[int] = ..., reused: _Optional[_Iterable[_Union[ReusedVerdict, _Mapping]]] = ..., session_key: _Optional[str] = ...) -> None: ...

class ReusedVerdict(_message.Message):
    __slots__ = ("raw", "count", "first_seconds_ago", "last_seconds_ago")
    RAW_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SECONDS_AGO_FIELD_NUMBER: _ClassVar[int]
    LAST_SECONDS_AGO_FIELD_NUMBER: _ClassVar[int]
    raw: str
    count: int
    first_seconds_ago: float
    last_seconds_ago: float
    def __init__(self, raw: _Optional[str] = ..., count: _Optional[int] = ..., first_seconds_ago: _Optional[float] = ..., last_seconds_ago: _Optional[float] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class DecideCall(_message.Message):
    __slots__ = ("call_id", "request", "more")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    request: DecideRequest
    more: _containers.RepeatedCompositeFieldContainer[DecideCall]
    def __init__(self, call_id: _Optional[int] = ..., request: _Optional[_Union[DecideRequest, _Mapping]] = ..., more: _Optional[_Iterable[_Union[DecideCall, _Mapping]]] = ...) -> None: ...

class DecideAnswer(_message.Message):
    __slots__ = ("call_id", "response", "code", "error", "more")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    response: DecideResponse
    code: int
    error: str
    more: _containers.RepeatedCompositeFieldContainer[DecideAnswer]
    def __init__(self, call_id: _Optional[int] = ..., response: _Optional[_Union[DecideResponse, _Mapping]] = ..., code: _Optional[int] = ..., error: _Optional[str] = ..., more: _Optional[_Iterable[_Union[DecideAnswer, _Mapping]]] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id", "reason", "abnormal", "summary", "reused", "session_key")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ABNORMAL_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    reason: str
    abnormal: bool
    summary: _struct_pb2.Struct
    reused: _containers.RepeatedCompositeFieldContainer[ReusedVerdict]
    session_key: str
    def __init__(self, session_id: _Optional[str] = ..., reason: _Optional[str] = ..., abnormal: _Optional[bool] = ..., summary: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., reused: _Optional[_Iterable[_Union[ReusedVerdict, _Mapping]]] = ..., session_key: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: _Optional[str] = ...) -> None: ...

class ServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfoResponse(_message.Message):
    __slots__ = ("policy_revision", "engine", "version", "engine_version", "decision_id")
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    policy_revision: str
    engine: str
    version: str
    engine_version: str
    decision_id: str
    def __init__(self, policy_revision: _Optional[str] = ..., engine: _Optional[str] = ..., version: _Optional[str] = ..., engine_version: _Optional[str] = ..., decision_id: _Optional[str] = ...) -> None: ...

class SessionEvent(_message.Message):
    __slots__ = ("time", "direction", "type", "decision_id", "verdict", "cached", "command", "details", "details_json")
    TIME_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    time: float
    direction: str
    type: str
    decision_id: str
    verdict: str
    cached: bool
    command: str
    details: _struct_pb2.Struct
    details_json: str
    def __init__(self, time: _Optional[float] = ..., direction: _Optional[str] = ..., type: _Optional[str] = ..., decision_id: _Optional[str] = ..., verdict: _Optional[str] = ..., cached: _Optional[bool] = ..., command: _Optional[str] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., details_json: _Optional[str] = ...) -> None: ...

class RecordEventsRequest(_message.Message):
    __slots__ = ("session_id", "events", "events_json", "batch_seq", "session_key")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    events: _containers.RepeatedCompositeFieldContainer[SessionEvent]
    events_json: str
    batch_seq: int
    session_key: str
    def __init__(self, session_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[SessionEvent, _Mapping]]] = ..., events_json: _Optional[str] = ..., batch_seq: _Optional[int] = ..., session_key: _Optional[str] = ...) -> None: ...

class RecordEventsResponse(_message.Message):
    __slots__ = ("recorded", "decision_id", "replayed")
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    decision_id: str
    replayed: bool
    def __init__(self, recorded: _Optional[int] = ..., decision_id: _Optional[str] = ..., replayed: _Optional[bool] = ...) -> None: ...

class RecordBatchesRequest(_message.Message):
    __slots__ = ("batches",)
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[RecordEventsRequest]
    def __init__(self, batches: _Optional[_Iterable[_Union[RecordEventsRequest, _Mapping]]] = ...) -> None: ...

class RecordBatchResult(_message.Message):
    __slots__ = ("recorded", "decision_id", "error", "replayed")
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    decision_id: str
    error: str
    replayed: bool
    def __init__(self, recorded: _Optional[int] = ..., decision_id: _Optional[str] = ..., error: _Optional[str] = ..., replayed: _Optional[bool] = ...) -> None: ...

class RecordBatchesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RecordBatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RecordBatchResult, _Mapping]]] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("id", "state", "requester", "connection", "command", "reasons", "approvers", "justification", "created_at", "expires_at", "approver", "decision_reason", "ttl_seconds", "parameters", "events", "statements")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    DECISION_REASON_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    STATEMENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: str
    requester: str
    connection: str
    command: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    approvers: _containers.RepeatedScalarFieldContainer[str]
    justification: str
    created_at: float
    expires_at: float
    approver: str
    decision_reason: str
    ttl_seconds: int
    parameters: _containers.RepeatedScalarFieldContainer[str]
    events: _containers.RepeatedScalarFieldContainer[str]
    statements: _containers.RepeatedCompositeFieldContainer[ApprovalStatement]
    def __init__(self, id: _Optional[str] = ..., state: _Optional[str] = ..., requester: _Optional[str] = ..., connection: _Optional[str] = ..., command: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ..., approvers: _Optional[_Iterable[str]] = ..., justification: _Optional[str] = ..., created_at: _Optional[float] = ..., expires_at: _Optional[float] = ..., approver: _Optional[str] = ..., decision_reason: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., parameters: _Optional[_Iterable[str]] = ..., events: _Optional[_Iterable[str]] = ..., statements: _Optional[_Iterable[_Union[ApprovalStatement, _Mapping]]] = ...) -> None: ...

class ApprovalStatement(_message.Message):
    __slots__ = ("text", "classification")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    text: str
    classification: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, text: _Optional[str] = ..., classification: _Optional[_Iterable[str]] = ...) -> None: ...

class WithdrawApprovalRequest(_message.Message):
    __slots__ = ("approval_id", "session_id", "token", "reason", "session_key")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    session_id: str
    token: str
    reason: str
    session_key: str
    def __init__(self, approval_id: _Optional[str] = ..., session_id: _Optional[str] = ..., token: _Optional[str] = ..., reason: _Optional[str] = ..., session_key: _Optional[str] = ...) -> None: ...

class WithdrawApprovalResponse(_message.Message):
    __slots__ = ("approval",)
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ...) -> None: ...

class AwaitApprovalRequest(_message.Message):
    __slots__ = ("session_id", "approval_id", "timeout_seconds", "session_key")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    approval_id: str
    timeout_seconds: int
    session_key: str
    def __init__(self, session_id: _Optional[str] = ..., approval_id: _Optional[str] = ..., timeout_seconds: _Optional[int] = ..., session_key: _Optional[str] = ...) -> None: ...

class ApprovalUpdate(_message.Message):
    __slots__ = ("approval", "decision_id")
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    decision_id: str
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ..., decision_id: _Optional[str] = ...) -> None: ...

class ListApprovalsRequest(_message.Message):
    __slots__ = ("token", "pending_only")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PENDING_ONLY_FIELD_NUMBER: _ClassVar[int]
    token: str
    pending_only: bool
    def __init__(self, token: _Optional[str] = ..., pending_only: _Optional[bool] = ...) -> None: ...

class ListApprovalsResponse(_message.Message):
    __slots__ = ("approvals", "decision_id")
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    decision_id: str
    def __init__(self, approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ..., decision_id: _Optional[str] = ...) -> None: ...

class ResolveApprovalRequest(_message.Message):
    __slots__ = ("token", "approval_id", "approve", "reason")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    token: str
    approval_id: str
    approve: bool
    reason: str
    def __init__(self, token: _Optional[str] = ..., approval_id: _Optional[str] = ..., approve: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ResolveApprovalResponse(_message.Message):
    __slots__ = ("approval", "decision_id")
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    decision_id: str
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ..., decision_id: _Optional[str] = ...) -> None: ...
