"""Catalog API: features, plans, customers and subscriptions."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from meterbill import catalog
from meterbill.http import create_resolver, json_body, logger, parse, respond, tenant_id
from meterbill.models import (
    CustomerCreate,
    FeatureCreate,
    PlanCreate,
    SubscriptionCreate,
    TenantSettings,
)
from meterbill.runtime import store
from meterbill.views import subscription_view

app = create_resolver()


@app.post("/v1/features")
def create_feature() -> Response[str]:
    tenant = tenant_id(app)
    request = parse(FeatureCreate, json_body(app))
    return respond(201, catalog.create_feature(store(), tenant, request))


@app.get("/v1/features")
def list_features() -> Response[str]:
    return respond(200, {"items": catalog.list_features(store(), tenant_id(app))})


@app.get("/v1/features/<feature_id>")
def get_feature(feature_id: str) -> Response[str]:
    return respond(200, catalog.get_feature(store(), tenant_id(app), feature_id))


@app.post("/v1/plans")
def create_plan() -> Response[str]:
    tenant = tenant_id(app)
    request = parse(PlanCreate, json_body(app))
    return respond(201, catalog.create_plan(store(), tenant, request))


@app.get("/v1/plans/<plan_id>")
def get_plan(plan_id: str) -> Response[str]:
    return respond(200, catalog.get_plan(store(), tenant_id(app), plan_id))


@app.post("/v1/customers")
def create_customer() -> Response[str]:
    tenant = tenant_id(app)
    request = parse(CustomerCreate, json_body(app))
    return respond(201, catalog.create_customer(store(), tenant, request))


@app.get("/v1/customers/<customer_id>")
def get_customer(customer_id: str) -> Response[str]:
    return respond(200, catalog.get_customer(store(), tenant_id(app), customer_id))


@app.post("/v1/subscriptions")
def create_subscription() -> Response[str]:
    tenant = tenant_id(app)
    request = parse(SubscriptionCreate, json_body(app))
    subscription = catalog.create_subscription(store(), tenant, request)
    return respond(201, subscription_view(subscription))


@app.get("/v1/subscriptions/<subscription_id>")
def get_subscription(subscription_id: str) -> Response[str]:
    subscription = catalog.get_subscription(store(), tenant_id(app), subscription_id)
    return respond(200, subscription_view(subscription))


@app.get("/v1/settings")
def get_settings() -> Response[str]:
    return respond(200, store().get_settings(tenant_id(app)))


@app.put("/v1/settings")
def put_settings() -> Response[str]:
    tenant = tenant_id(app)
    settings = parse(TenantSettings, json_body(app))
    store().put_settings(tenant, settings)
    return respond(200, settings)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
