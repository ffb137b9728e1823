"""Install lofn."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "lofn" / "__init__.py").read_text(),
                    re.MULTILINE).group(1)

setup(
    name="lofn",
    version=VERSION,
    description="Parallelize a serial command-line tool with Spark and Docker",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["lofn", "lofn.*"]),
    package_data={"lofn": ["py.typed"]},
    python_requires=">=3.10",
    # pyspark is an extra: on a cluster Spark provides it, and a packed
    # environment shipped to YARN executors (scripts/pack_env.sh) stays small.
    install_requires=["docker>=7.0", "hdfs>=2.7"],
    extras_require={"spark": ["pyspark>=3.5"], "test": ["pytest>=7"], "docs": ["sphinx>=7"],
                    # lofn.dataframe: mapInArrow needs pyarrow; a Spark Connect client
                    # also needs pandas, grpcio and protobuf, which this extra pulls in.
                    "connect": ["pyspark[connect]>=3.5"]},
    entry_points={"console_scripts": ["lofn = lofn.cli:main"]},
)
