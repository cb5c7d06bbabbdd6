"""What the route guide examples share: the generated modules and the feature data.

Importing this module generates ``routeguide_pb2.py`` and ``routeguide_pb2_grpc.py``
from ``routeguide.proto`` with ``python -m grpc_tools.protoc`` (into ``_generated/``
beside this file, or the folder named by ``ROUTEGUIDE_GENERATED``) unless they are
already there and newer than the proto, and imports them. Generated code is never
committed.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "routeguide.proto"


def generate(out_dir: Path) -> Path:
    """Write the generated modules into ``out_dir`` unless they are up to date."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = out_dir / "routeguide_pb2_grpc.py"
    if not made.exists() or made.stat().st_mtime < PROTO.stat().st_mtime:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{HERE}",
                f"--python_out={out_dir}",
                f"--grpc_python_out={out_dir}",
                str(PROTO),
            ],
            check=True,
        )
    return out_dir


sys.path.insert(0, str(generate(Path(os.environ.get("ROUTEGUIDE_GENERATED", HERE / "_generated")))))

import routeguide_pb2  # noqa: E402
import routeguide_pb2_grpc  # noqa: E402

__all__ = [
    "FEATURES",
    "distance",
    "feature_at",
    "in_rectangle",
    "valid",
    "routeguide_pb2",
    "routeguide_pb2_grpc",
]

#: (name, latitude, longitude), coordinates in degrees times 10^7
_PLACES = [
    ("Patriots Path, Mendham, NJ 07945, USA", 407838351, -746143763),
    ("101 New Jersey 10, Whippany, NJ 07981, USA", 408122808, -743999179),
    ("U.S. 6, Shohola, PA 18458, USA", 413628156, -749015468),
    ("5 Conners Road, Kingston, NY 12401, USA", 419999544, -740371136),
    ("Mid Hudson Psychiatric Center, New Hampton, NY 10958, USA", 414008389, -743951297),
]

FEATURES = [
    routeguide_pb2.Feature(name=name, location=routeguide_pb2.Point(latitude=lat, longitude=lon))
    for name, lat, lon in _PLACES
]


def feature_at(point: routeguide_pb2.Point, features: Iterable[routeguide_pb2.Feature]) -> str:
    """The name of the feature at ``point``, or ``""`` if there is none."""
    for feature in features:
        if feature.location == point:
            return feature.name
    return ""


def in_rectangle(point: routeguide_pb2.Point, rect: routeguide_pb2.Rectangle) -> bool:
    lo_lat, hi_lat = sorted((rect.lo.latitude, rect.hi.latitude))
    lo_lon, hi_lon = sorted((rect.lo.longitude, rect.hi.longitude))
    return lo_lat <= point.latitude <= hi_lat and lo_lon <= point.longitude <= hi_lon


def distance(start: routeguide_pb2.Point, end: routeguide_pb2.Point) -> int:
    """Great-circle distance in metres (haversine)."""
    factor = 1e7
    lat1, lat2 = math.radians(start.latitude / factor), math.radians(end.latitude / factor)
    dlat = lat2 - lat1
    dlon = math.radians((end.longitude - start.longitude) / factor)
    a = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return int(6_371_000 * 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a)))


def valid(point: routeguide_pb2.Point) -> bool:
    """Whether ``point`` is a latitude and longitude on Earth."""
    return abs(point.latitude) <= 900_000_000 and abs(point.longitude) <= 1_800_000_000
