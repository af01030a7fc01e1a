"""IoTDA property reports (``{"services": [...]}``): their limits, and judging their values against a model.

Pure rules, like core/alink.py for the Alibaba dialect; the validation *policy* (what a report with refusals
keeps) is core/validation.py's, for both.
"""

from typing import Any

from thingport.core.errors import ParamError
from thingport.core.thingmodel import PropertyError, ThingModel
from thingport.core.timestamps import parse_iotda_time, sample_time

MAX_CHILDREN = 50
MAX_SERVICES = 100
# Properties in one request (every service; every sub-device of a gateway report). IoTDA documents no such
# cap (its MQTT messages stop at 64 KB, its models bound the rest); thingport stores schemaless properties,
# so without one a 1 MB report could carry ~65,000 history rows and hold the single writer for ~1 s.
MAX_PROPERTIES = 1000


def property_count(services: object) -> int:
    """The properties a ``services`` list carries (malformed entries count none: ``judge_services`` refuses
    them)."""
    if not isinstance(services, list):
        return 0
    return sum(len(s["properties"]) for s in services if isinstance(s, dict) and isinstance(s.get("properties"), dict))


def cap_properties(count: int) -> None:
    if count > MAX_PROPERTIES:
        raise ParamError(f"at most {MAX_PROPERTIES} properties in one request, got {count}")


def _refusal(service_id: str, error: PropertyError) -> dict[str, Any]:
    return {"service_id": service_id, "property": error.identifier, "reason": error.reason}


def judge_services(
    model: ThingModel, services: object, received_ms: int
) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """(accepted values by time, refusals as IoTDA replies name them) of one device's ``services``;
    ParamError when the list itself is malformed."""
    if not isinstance(services, list) or not services:
        raise ParamError("services must be a non-empty list")
    if len(services) > MAX_SERVICES:
        raise ParamError(f"at most {MAX_SERVICES} services in one report")
    groups: dict[int, dict[str, Any]] = {}  # time -> the values given for it
    refused: list[dict[str, Any]] = []
    for service in services:
        if not isinstance(service, dict):
            raise ParamError("each service must be a JSON object")
        service_id, properties = service.get("service_id"), service.get("properties")
        if not isinstance(service_id, str) or not service_id:
            raise ParamError("service_id must be a non-empty string")
        if not isinstance(properties, dict):
            raise ParamError(f"properties of service {service_id} must be a JSON object")
        at = sample_time(parse_iotda_time(service.get("event_time")), received_ms)
        accepted, bad = model.validate_service_properties(service_id, properties)
        if accepted:
            groups.setdefault(at, {}).update(accepted)
        refused.extend(_refusal(service_id, error) for error in bad)
    return groups, refused
