"""Run docs/distributed.md's Spark recipe in local mode and compare it with `score_dataframe`.

    pip install pyspark  # and a Java 17+ runtime (Debian: openjdk-17-jre-headless)
    PYSPARK_PYTHON=$(which python) python scripts/spark_recipe_check.py RUN LIGHTCURVES METADATA

PySpark is not a dependency of the project and CI does not run this; it checks by hand that the
recipe (an empty frame's schema through `from_arrow_schema`, `mapInPandas` over partitions
repartitioned by `object_id`) gives the scores that `score_dataframe` gives in one call.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from plasticc_jax import score_dataframe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("lightcurves", type=Path)
    parser.add_argument("metadata", type=Path)
    parser.add_argument("--objects", type=int, default=60)
    args = parser.parse_args()
    run = str(args.run.resolve())
    meta = pd.read_csv(args.metadata).head(args.objects)
    lcs = pd.read_csv(args.lightcurves)
    rows = lcs[lcs["object_id"].isin(meta["object_id"])].merge(meta, on="object_id")
    spark = SparkSession.builder.master("local[2]").getOrCreate()
    with tempfile.TemporaryDirectory() as folder:
        rows.to_parquet(Path(folder) / "rows.parquet", index=False)
        frame = spark.read.parquet(str(Path(folder) / "rows.parquet"))
        empty = score_dataframe(frame.limit(0).toPandas(), run)
        schema = from_arrow_schema(pa.Schema.from_pandas(empty, preserve_index=False))

        def score_partition(batches):
            batches = list(batches)
            if batches:
                yield score_dataframe(pd.concat(batches, ignore_index=True), run)

        scored = frame.repartition(4, "object_id").mapInPandas(score_partition, schema)
        spark_table = scored.toPandas().sort_values("object_id", ignore_index=True)
    spark.stop()
    direct = score_dataframe(rows, run)
    assert list(spark_table.columns) == list(direct.columns), "the columns differ"
    assert spark_table["object_id"].tolist() == direct["object_id"].tolist(), "the objects differ"
    for column in ("rejected_reason", "flagged", "nearest_class"):
        same = spark_table[column].fillna("").tolist() == direct[column].fillna("").tolist()
        assert same, f"{column} differs"
    a, b = spark_table["anomaly_score"].to_numpy(), direct["anomaly_score"].to_numpy()
    assert np.array_equal(np.isnan(a), np.isnan(b)), "scored on one side, rejected on the other"
    gap = float(np.nanmax(np.abs(a - b)))
    n_rejected = int(direct["rejected_reason"].notna().sum())
    print(
        f"{len(spark_table)} objects ({n_rejected} rejected, the same); the same flags and "
        f"nearest classes; largest anomaly_score difference {gap:.2g}"
    )


if __name__ == "__main__":
    main()
