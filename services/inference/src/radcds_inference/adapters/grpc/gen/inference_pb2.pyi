from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnalyzeStudyRequest(_message.Message):
    __slots__ = ("study_instance_uid", "model_names")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAMES_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    model_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, study_instance_uid: _Optional[str] = ..., model_names: _Optional[_Iterable[str]] = ...) -> None: ...

class Coding(_message.Message):
    __slots__ = ("system", "code", "display")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FIELD_NUMBER: _ClassVar[int]
    system: str
    code: str
    display: str
    def __init__(self, system: _Optional[str] = ..., code: _Optional[str] = ..., display: _Optional[str] = ...) -> None: ...

class Measurement(_message.Message):
    __slots__ = ("code", "value", "ucum_unit")
    CODE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UCUM_UNIT_FIELD_NUMBER: _ClassVar[int]
    code: Coding
    value: float
    ucum_unit: str
    def __init__(self, code: _Optional[_Union[Coding, _Mapping]] = ..., value: _Optional[float] = ..., ucum_unit: _Optional[str] = ...) -> None: ...

class InstanceAnalysis(_message.Message):
    __slots__ = ("sop_instance_uid", "model_name", "model_version", "measurements", "not_analysed_reason", "findings", "critical", "location", "series_instance_uid", "key_image_frame_number")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    NOT_ANALYSED_REASON_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    KEY_IMAGE_FRAME_NUMBER_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    model_name: str
    model_version: str
    measurements: _containers.RepeatedCompositeFieldContainer[Measurement]
    not_analysed_reason: str
    findings: _containers.RepeatedCompositeFieldContainer[Coding]
    critical: bool
    location: str
    series_instance_uid: str
    key_image_frame_number: int
    def __init__(self, sop_instance_uid: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., measurements: _Optional[_Iterable[_Union[Measurement, _Mapping]]] = ..., not_analysed_reason: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[Coding, _Mapping]]] = ..., critical: _Optional[bool] = ..., location: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., key_image_frame_number: _Optional[int] = ...) -> None: ...

class AnalyzeStudyResponse(_message.Message):
    __slots__ = ("study_instance_uid", "analyses")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    ANALYSES_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    analyses: _containers.RepeatedCompositeFieldContainer[InstanceAnalysis]
    def __init__(self, study_instance_uid: _Optional[str] = ..., analyses: _Optional[_Iterable[_Union[InstanceAnalysis, _Mapping]]] = ...) -> None: ...
