"""Thing model documents as the management side takes them: which format one is in, and compiling it with
errors an operator can act on."""

from typing import Any

from thingport.core.errors import ParamError
from thingport.core.thingmodel import ThingModel, ThingModelError, require_sections

MODEL_FORMATS = ("auto", "tsl", "huawei")


def model_format_of(document: dict) -> str:
    """``huawei`` for an IoTDA product model (services with service_id), else ``tsl``."""
    services = document.get("services")
    if "properties" not in document and isinstance(services, list) and services and all(
        isinstance(s, dict) and "service_id" in s for s in services
    ):
        return "huawei"
    return "tsl"


def compile_model(document: Any, model_format: str) -> ThingModel:
    """``document`` as a compiled model in ``model_format`` (auto: told by its shape); ParamError saying
    what is wrong otherwise."""
    if not isinstance(document, dict):
        raise ParamError("a thing model is a JSON object")
    if model_format not in MODEL_FORMATS:
        raise ParamError(f"model format must be one of {', '.join(MODEL_FORMATS)}")
    if model_format == "auto":
        model_format = model_format_of(document)
    try:
        require_sections(document, model_format)
        return ThingModel.from_tsl(document) if model_format == "tsl" else ThingModel.from_huawei(document)
    except ThingModelError as exc:
        raise ParamError(f"invalid thing model: {exc}") from None
