"""template.yaml against the code it deploys: lint, handlers, routes, permissions, the stream.

These read the template as SAM receives it, before the transform, so a failure names the
property to fix rather than a generated resource.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Callable
from importlib.metadata import packages_distributions
from pathlib import Path
from types import ModuleType
from typing import Any

from cfnlint.api import lint_file

from meterbill.local.template import Template
from meterbill.openapi import ROUTES
from tests.conftest import Handler

RUNTIME = "python3.13"
ARCHITECTURE = "arm64"
# Dependencies the Lambda Python runtime already provides, so the layer need not ship them.
RUNTIME_PROVIDED = {"boto3", "botocore"}

Route = tuple[str, str]


def _functions(template: Template) -> list[str]:
    return sorted(template.functions())


def _function_module(load_handler: Callable[[str], Handler], function: str) -> ModuleType:
    # The handler is wrapped by Powertools' decorators; functools.wraps keeps its module name.
    return sys.modules[load_handler(function).__module__]


def _served_routes(module: ModuleType) -> set[Route]:
    resolver = getattr(module, "app", None)
    if resolver is None:
        return set()
    # NOTE: Powertools has no public listing of a resolver's routes; these two lists are it.
    routes = [*resolver._static_routes, *resolver._dynamic_routes]
    return {(route.method.upper(), route.openapi_path) for route in routes}


def _template_routes(template: Template, function: str) -> set[Route]:
    return {(r.method, r.path) for r in template.http_routes() if r.function == function}


def _statements(properties: dict[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for policy in properties.get("Policies") or []:
        if isinstance(policy, dict) and "Statement" in policy:
            statements.extend(policy["Statement"])
    return statements


def _actions(properties: dict[str, Any]) -> set[str]:
    actions: set[str] = set()
    for statement in _statements(properties):
        action = statement.get("Action", [])
        actions.update([action] if isinstance(action, str) else action)
    return actions


def _stream_event_source(template: Template) -> dict[str, Any]:
    sources: list[dict[str, Any]] = [
        event["Properties"]
        for properties in template.functions().values()
        for event in (properties.get("Events") or {}).values()
        if event["Type"] == "DynamoDB"
    ]
    assert len(sources) == 1, "expected exactly one DynamoDB stream event source"
    return sources[0]


def _table(template: Template) -> dict[str, Any]:
    tables = [r for r in template.resources.values() if r["Type"] == "AWS::DynamoDB::Table"]
    assert len(tables) == 1
    properties: dict[str, Any] = tables[0]["Properties"]
    return properties


def _layer(template: Template) -> tuple[str, dict[str, Any]]:
    layers = [
        (name, resource)
        for name, resource in template.resources.items()
        if resource["Type"] == "AWS::Serverless::LayerVersion"
    ]
    assert len(layers) == 1
    return layers[0]


def _third_party_imports(sources: list[Path]) -> set[str]:
    names: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "meterbill"}


def _normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


# --- lint and handlers --------------------------------------------------------------------------


def test_cfn_lint_finds_nothing(template: Template) -> None:
    matches = lint_file(template.path)

    assert [str(match) for match in matches] == []


def test_every_handler_resolves_to_a_callable_in_its_code_uri(
    template: Template, load_handler: Callable[[str], Handler]
) -> None:
    for function in _functions(template):
        source, _ = template.handler_file(function)

        assert source.is_file(), f"{function}: {source} does not exist"
        assert callable(load_handler(function)), f"{function}: handler is not callable"


# --- routes -------------------------------------------------------------------------------------


def test_template_routes_are_exactly_the_routes_each_resolver_serves(
    template: Template, load_handler: Callable[[str], Handler]
) -> None:
    for function in _functions(template):
        served = _served_routes(_function_module(load_handler, function))

        assert _template_routes(template, function) == served, function


def test_template_routes_are_the_documented_routes(template: Template) -> None:
    routes = [(r.method, r.path, r.authenticated) for r in template.http_routes()]

    assert len(routes) == len(set(routes)), "a route is declared twice"
    assert set(routes) == {(r.method, r.path, r.authenticated) for r in ROUTES}


def test_every_route_is_on_the_api_with_the_authorizer(template: Template) -> None:
    api_name = next(
        name for name, r in template.resources.items() if r["Type"] == "AWS::Serverless::HttpApi"
    )
    events = [
        (function, event["Properties"])
        for function, properties in template.functions().items()
        for event in (properties.get("Events") or {}).values()
        if event["Type"] == "HttpApi"
    ]

    # Without ApiId, SAM puts the route on an implicit second API that has no authorizer.
    for function, spec in events:
        assert spec.get("ApiId") == {"Ref": api_name}, f"{function} {spec.get('Path')}"


def test_only_the_openapi_document_skips_the_authorizer(template: Template) -> None:
    public = [(r.function, r.route_key) for r in template.http_routes() if not r.authenticated]

    assert public == [("OpenApiFunction", "GET /v1/openapi.json")]


def test_default_authorizer_is_the_authorizer_function_and_may_be_invoked(
    template: Template,
) -> None:
    api = next(r for r in template.resources.values() if r["Type"] == "AWS::Serverless::HttpApi")
    auth = api["Properties"]["Auth"]
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]

    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["EnableSimpleResponses"] is True
    assert authorizer["Identity"]["Headers"] == ["x-api-key"]
    # SAM adds no lambda:InvokeFunction permission for an HttpApi authorizer unless asked.
    assert authorizer.get("EnableFunctionDefaultPermissions") is True or authorizer.get(
        "FunctionInvokeRole"
    )


# --- runtime and layer --------------------------------------------------------------------------


def test_every_function_runs_python_3_13_on_arm64_with_the_layer(template: Template) -> None:
    defaults = template.document["Globals"]["Function"]
    layer_name, _ = _layer(template)

    assert defaults["Runtime"] == RUNTIME
    assert defaults["Architectures"] == [ARCHITECTURE]
    assert {"Ref": layer_name} in defaults["Layers"]
    for function, properties in template.functions().items():
        assert properties.get("Runtime", RUNTIME) == RUNTIME, function
        assert properties.get("Architectures", [ARCHITECTURE]) == [ARCHITECTURE], function


def test_layer_is_built_from_shared_for_the_same_runtime_and_architecture(
    template: Template,
) -> None:
    _, layer = _layer(template)

    assert layer["Properties"]["ContentUri"].rstrip("/") == "shared"
    assert (template.root / "shared" / "meterbill" / "__init__.py").is_file()
    assert RUNTIME in layer["Properties"]["CompatibleRuntimes"]
    assert ARCHITECTURE in layer["Properties"]["CompatibleArchitectures"]
    assert layer["Metadata"] == {"BuildMethod": RUNTIME, "BuildArchitecture": ARCHITECTURE}


def test_layer_requirements_pin_every_package_the_functions_import(template: Template) -> None:
    _, layer = _layer(template)
    content = template.root / layer["Properties"]["ContentUri"]
    # Top-level modules only: meterbill.local (moto, PyYAML) never runs in Lambda.
    sources = [
        *sorted((content / "meterbill").glob("*.py")),
        *sorted((template.root / "functions").glob("*/*.py")),
    ]
    distributions = packages_distributions()
    needed = {
        _normalized(distribution)
        for name in _third_party_imports(sources)
        for distribution in distributions.get(name, [name])
    } - RUNTIME_PROVIDED

    lines = (content / "requirements.txt").read_text().splitlines()
    pins = [line for line in lines if line.strip() and not line.startswith("#")]
    pinned = {_normalized(line.split("==")[0]) for line in pins}

    assert all("==" in line for line in pins), pins
    assert needed <= pinned, f"the layer would miss {sorted(needed - pinned)}"


# --- permissions --------------------------------------------------------------------------------


def test_no_function_may_scan_or_use_wildcards_or_crud_policy(template: Template) -> None:
    for function, properties in template.functions().items():
        policies = properties.get("Policies") or []
        sam_policies = {p if isinstance(p, str) else next(iter(p)) for p in policies}
        actions = _actions(properties)

        assert "DynamoDBCrudPolicy" not in sam_policies, function
        assert "dynamodb:Scan" not in actions, function
        assert not [a for a in actions if "*" in a], function
        for statement in _statements(properties):
            assert statement.get("Resource") != "*", function


def test_ingest_can_neither_delete_nor_update_anything_but_rate_windows(
    template: Template,
) -> None:
    properties = template.functions()["IngestFunction"]
    actions = _actions(properties)
    updates = [s for s in _statements(properties) if "dynamodb:UpdateItem" in _as_list(s["Action"])]

    assert "dynamodb:PutItem" in actions
    assert not actions & {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    assert len(updates) == 1
    assert _as_list(updates[0]["Action"]) == ["dynamodb:UpdateItem"]
    condition = updates[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    assert condition == ["T#*#RATE#*"]


# --- table and stream ---------------------------------------------------------------------------


def test_stream_event_source_reports_partial_failures_and_keeps_what_it_gives_up(
    template: Template,
) -> None:
    source = _stream_event_source(template)
    destination = source["DestinationConfig"]["OnFailure"]
    queue = destination["Destination"]["Fn::GetAtt"]

    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["BisectBatchOnFunctionError"] is True
    assert source["StartingPosition"] == "TRIM_HORIZON"
    assert destination["Type"] == "SQS"
    assert queue[1] == "Arn"
    assert template.resources[queue[0]]["Type"] == "AWS::SQS::Queue"


def test_stream_event_source_reads_the_table_stream_and_selects_new_events(
    template: Template,
) -> None:
    source = _stream_event_source(template)
    table_name = next(
        name for name, r in template.resources.items() if r["Type"] == "AWS::DynamoDB::Table"
    )

    assert source["Stream"] == {"Fn::GetAtt": [table_name, "StreamArn"]}
    assert template.stream_consumer().filter_patterns == [
        {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"type": {"S": ["event"]}}}}
    ]


def test_table_streams_new_images_and_expires_items(template: Template) -> None:
    table = _table(template)

    assert table["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert table["TimeToLiveSpecification"]["Enabled"] is True
    assert template.ttl_attribute()


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else [value]
