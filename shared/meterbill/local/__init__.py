"""The local runtime: the Lambda handlers of template.yaml served over HTTP on an embedded
DynamoDB (moto), with the table's stream pumped to the aggregator as Lambda would."""
