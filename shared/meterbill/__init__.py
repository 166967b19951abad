"""meterbill: usage-based billing on AWS Lambda and DynamoDB.

The package is shared by every function (shipped as a Lambda layer) and by the local runtime.
Domain modules (metering, pricing, periods, catalog, ingest, aggregation, billing) know nothing
about HTTP or boto3; `storage` is the only module that talks to DynamoDB.
"""

__version__ = "0.1.0"
