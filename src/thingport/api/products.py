"""Products: their settings, thing model and custom topic categories."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from thingport.api import schemas as s
from thingport.api.deps import Admin, Manage, Read
from thingport.api.views import counted_product_json, product_json, topics_json
from thingport.manage.service import KEEP, Keep

router = APIRouter(tags=["products"])


@router.get("/api/products", response_model=list[s.CountedProductOut], dependencies=[Read])
async def list_products(management: Manage) -> list[dict]:
    """Products, each with its devices counted: total, online, disabled."""
    products = await management.products()
    counts = await management.device_counts()
    return [counted_product_json(p, counts.get(p.product_key)) for p in products]


@router.post("/api/products", response_model=s.ProductOut, status_code=201, dependencies=[Admin],
             responses={409: {"model": s.ErrorResponse}})
async def create_product(body: s.ProductCreate, management: Manage) -> dict:
    product = await management.create_product(
        body.name, body.productKey, body.nodeType, body.thingModel, body.validation,
        topics=[(t.topic, t.operation) for t in body.topics], require_sign_type_1=body.requireSignType1,
    )
    return product_json(product)


@router.get("/api/products/{productKey}", response_model=s.CountedProductOut, dependencies=[Read])
async def get_product(productKey: str, management: Manage) -> dict:
    product = await management.product(productKey)
    counts = await management.device_counts(productKey)
    return counted_product_json(product, counts.get(productKey))


@router.patch("/api/products/{productKey}", response_model=s.ProductOut, dependencies=[Admin])
async def update_product(productKey: str, body: s.ProductUpdate, management: Manage) -> dict:
    """Change the validation mode, the presence timeout, its devices' report rate limit and/or whether their
    IoTDA auth must be sign_type 1."""
    sign_type_1: bool | None | Keep = body.requireSignType1 if body.requireSignType1 is not None else KEEP
    if body.followServerSignType1:
        sign_type_1 = None
    return product_json(await management.update_product(
        productKey, validation=body.validation, presence_timeout_s=body.presenceTimeout,
        report_rate=body.deviceReportRate, report_burst=body.deviceReportBurst, require_sign_type_1=sign_type_1,
    ))


@router.get("/api/products/{productKey}/thing-model", response_model=s.ThingModelOut, dependencies=[Read])
async def get_thing_model(productKey: str, management: Manage) -> dict:
    """The model as imported, in its own format."""
    return await management.model_document(productKey)


@router.put("/api/products/{productKey}/thing-model", response_model=s.ProductOut, dependencies=[Admin])
async def put_thing_model(
    productKey: str, body: dict[str, Any], management: Manage,
    format: Annotated[str, Query(pattern="^(auto|tsl|huawei)$")] = "auto",
) -> dict:
    """Replace the model (a new version); running servers use it within a second."""
    return product_json(await management.import_thing_model(productKey, body, format))


@router.get("/api/products/{productKey}/thing-model/tsl", response_model=dict[str, Any], dependencies=[Read])
async def get_tsl(productKey: str, management: Manage) -> dict:
    """The model as Alibaba TSL."""
    return await management.export_thing_model(productKey)


@router.get("/api/products/{productKey}/topics", response_model=list[s.TopicCategory], dependencies=[Read])
async def get_topics(productKey: str, management: Manage) -> list[dict[str, str]]:
    return topics_json(await management.product(productKey))


@router.put("/api/products/{productKey}/topics", response_model=s.ProductOut, dependencies=[Admin])
async def put_topics(
    productKey: str, body: Annotated[list[s.TopicCategory], Body(max_length=50)], management: Manage,
) -> dict:
    """Replace the custom topic categories: pub (devices publish), sub (devices subscribe), all."""
    return product_json(await management.set_topic_categories(productKey, [(t.topic, t.operation) for t in body]))


@router.delete("/api/products/{productKey}", response_model=s.ProductDeleted, dependencies=[Admin],
               responses={409: {"model": s.ErrorResponse}})
async def delete_product(
    productKey: str, management: Manage, force: bool = False,
) -> dict:
    """Delete the product and its thing model. Refused (409) while it has devices or subscriptions, unless
    ``force``: then they are deleted too (devices with their running status and history). Messages stay."""
    product, devices, subscriptions = await management.delete_product(productKey, force)
    return {**product_json(product), "deleted": True, "devicesDeleted": devices, "subscriptionsDeleted": subscriptions}
