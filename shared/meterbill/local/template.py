"""Reading template.yaml: the table definition, the HTTP routes and the stream consumer.

The local runtime and the tests build everything from the template, so the two cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "HttpRoute",
    "QueueConsumer",
    "StreamConsumer",
    "Template",
    "find_project_root",
    "queue_consumers",
    "scheduled_functions",
]


class _CloudFormationLoader(yaml.SafeLoader):
    """Loads short-form intrinsic functions (!Ref, !GetAtt, !Sub...) as plain mappings."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str
    function: str
    authenticated: bool

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when this route serves the request, else None."""
        if method != self.method:
            return None
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        found = re.fullmatch(pattern, path)
        return None if found is None else found.groupdict()


@dataclass(frozen=True)
class StreamConsumer:
    function: str
    batch_size: int
    filter_patterns: list[dict[str, Any]]


class Template:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.root = path.parent
        self.document: dict[str, Any] = yaml.load(path.read_text(), Loader=_CloudFormationLoader)
        self.resources: dict[str, Any] = self.document["Resources"]

    def functions(self) -> dict[str, dict[str, Any]]:
        return {
            name: resource["Properties"]
            for name, resource in self.resources.items()
            if resource["Type"] == "AWS::Serverless::Function"
        }

    def handler_file(self, function: str) -> tuple[Path, str]:
        """The handler's source file and function name, e.g. (functions/ingest/app.py, handler)."""
        properties = self.functions()[function]
        module, attribute = properties["Handler"].rsplit(".", 1)
        source = self.root / properties["CodeUri"] / (module.replace(".", "/") + ".py")
        return source, attribute

    def queues(self) -> list[str]:
        return [name for name, r in self.resources.items() if r["Type"] == "AWS::SQS::Queue"]

    def environment(self, resolve: Any) -> dict[str, str]:
        """Every function's environment variables (globals first), with `resolve` turning a
        `Ref` into its local value."""
        variables: dict[str, Any] = {}
        globals_ = (self.document.get("Globals") or {}).get("Function") or {}
        variables.update(((globals_.get("Environment") or {}).get("Variables")) or {})
        for properties in self.functions().values():
            variables.update(((properties.get("Environment") or {}).get("Variables")) or {})
        return {
            name: resolve(value["Ref"]) if isinstance(value, dict) else str(value)
            for name, value in variables.items()
        }

    def parameter_default(self, name: str) -> str | None:
        parameter = (self.document.get("Parameters") or {}).get(name)
        return None if parameter is None else str(parameter.get("Default"))

    def table_definition(self, table_name: str) -> dict[str, Any]:
        """CreateTable arguments for the one DynamoDB table."""
        tables = [r for r in self.resources.values() if r["Type"] == "AWS::DynamoDB::Table"]
        properties = tables[0]["Properties"]
        definition = {
            "TableName": table_name,
            "BillingMode": properties["BillingMode"],
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "KeySchema": properties["KeySchema"],
            "StreamSpecification": {
                "StreamEnabled": True,
                "StreamViewType": properties["StreamSpecification"]["StreamViewType"],
            },
        }
        if "GlobalSecondaryIndexes" in properties:
            definition["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
        return definition

    def ttl_attribute(self) -> str | None:
        tables = [r for r in self.resources.values() if r["Type"] == "AWS::DynamoDB::Table"]
        ttl = tables[0]["Properties"].get("TimeToLiveSpecification") or {}
        return ttl.get("AttributeName") if ttl.get("Enabled") else None

    def http_routes(self) -> list[HttpRoute]:
        routes = []
        for name, properties in self.functions().items():
            for event in (properties.get("Events") or {}).values():
                if event["Type"] != "HttpApi":
                    continue
                spec = event["Properties"]
                auth = (spec.get("Auth") or {}).get("Authorizer")
                routes.append(HttpRoute(spec["Method"].upper(), spec["Path"], name, auth != "NONE"))
        return routes

    def authorizer_function(self) -> str:
        for resource in self.resources.values():
            if resource["Type"] != "AWS::Serverless::HttpApi":
                continue
            auth = resource["Properties"]["Auth"]
            authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
            return str(authorizer["FunctionArn"]["Fn::GetAtt"][0])
        raise LookupError("template.yaml has no HttpApi with a default authorizer")

    def stream_consumer(self) -> StreamConsumer:
        for name, properties in self.functions().items():
            for event in (properties.get("Events") or {}).values():
                if event["Type"] != "DynamoDB":
                    continue
                spec = event["Properties"]
                filters = (spec.get("FilterCriteria") or {}).get("Filters", [])
                patterns = [yaml.safe_load(f["Pattern"]) for f in filters]
                return StreamConsumer(name, int(spec.get("BatchSize", 100)), patterns)
        raise LookupError("template.yaml has no DynamoDB stream consumer")


@dataclass(frozen=True)
class QueueConsumer:
    function: str
    queue: str
    batch_size: int


def queue_consumers(template: Template) -> list[QueueConsumer]:
    consumers = []
    for name, properties in template.functions().items():
        for event in (properties.get("Events") or {}).values():
            if event["Type"] != "SQS":
                continue
            spec = event["Properties"]
            queue = spec["Queue"]["Fn::GetAtt"][0]
            consumers.append(QueueConsumer(name, queue, int(spec.get("BatchSize", 10))))
    return consumers


def scheduled_functions(template: Template) -> list[str]:
    return [
        name
        for name, properties in template.functions().items()
        if any(
            e["Type"] in ("ScheduleV2", "Schedule")
            for e in (properties.get("Events") or {}).values()
        )
    ]


def find_project_root(start: Path | None = None) -> Path:
    """The checkout holding template.yaml: from `start`, the working directory or this package."""
    candidates = [start] if start else [Path.cwd(), Path(__file__).resolve()]
    for candidate in candidates:
        for folder in [candidate, *candidate.parents]:
            if (folder / "template.yaml").is_file() and (folder / "functions").is_dir():
                return folder
    raise FileNotFoundError(
        "cannot find template.yaml: run meterbill from a meterbill checkout (or pass --project)"
    )
