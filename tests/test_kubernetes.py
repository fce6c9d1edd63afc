"""profiles/kubernetes: a dry run through the Kubernetes executor's profile
with S3 (a local moto server) as Snakemake's default storage. No cluster is
needed for a dry run; the storage plugin checks the bucket for every input
and output, so the profile's storage settings are exercised for real."""

from __future__ import annotations

import re

import pytest
from conftest import run_snakemake

from chunkindex.testing.servers import MotoS3Server

pytestmark = pytest.mark.network_local


@pytest.fixture(scope="module")
def bucket():
    import boto3

    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    with MotoS3Server() as s3:
        boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket="work")
        yield {"endpoint": s3.endpoint, "env": credentials}


def _dry_run(bucket, dataset: str, *extra: str):
    return run_snakemake("-n", "--profile", "profiles/kubernetes", "--default-storage-prefix", "s3://work/chunkindex",
                         "--storage-s3-endpoint-url", bucket["endpoint"], *extra, "--config", f"dataset={dataset}",
                         env=bucket["env"])


def test_the_executor_and_storage_plugins_are_installed():
    from snakemake_executor_plugin_kubernetes import ExecutorSettings  # noqa: F401
    from snakemake_storage_plugin_s3 import StorageProviderSettings  # noqa: F401


def test_kubernetes_dry_run_maps_every_output_to_s3_and_keeps_the_recipe_local(bucket):
    result = _dry_run(bucket, "ghrsst")
    out = result.stdout
    assert "Using profiles profiles/kubernetes" in result.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.MULTILINE))
    assert {"list_sources", "write", "validate", "report"} <= set(jobs)
    # Outputs, logs and benchmarks go to the bucket under the prefix ...
    assert "output: s3://work/chunkindex/results/ghrsst/manifest.parquet (send to storage)" in out
    assert "log: s3://work/chunkindex/results/logs/ghrsst/list.log (send to storage)" in out
    assert "s3://work/chunkindex/results/ghrsst/index/ghrsst.parq (retrieve from storage)" in out
    # ... the recipe is a workflow source shipped with the jobs, not an object.
    assert "s3://work/chunkindex/recipes" not in out
    assert re.search(r"input: .*recipes/ghrsst.yaml", out)
    # Pods are sized from the rules' declared resources.
    assert re.search(r"rule write:(?:\n .*)*\n\s+resources: .*mem_mb=2000", out)
