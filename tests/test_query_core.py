"""One query core for every reader: the sync and async Redis readers offer the same methods with
the same signatures, and the bounds and argument rules come from ``core/query.py``."""

from __future__ import annotations

import inspect

import pytest

from stream_features import EngineSettings, InvalidQuery
from stream_features.core.query import MAX_COHORT_SIZE, distinct, resolve, resolve_rows
from stream_features.errors import CohortTooLarge
from stream_features.query.reader import AsyncFeatureReader, FeatureReader


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(cls).items() if not name.startswith("_")}


def test_sync_and_async_readers_have_the_same_methods_and_signatures() -> None:
    sync, asynchronous = _public(FeatureReader), _public(AsyncFeatureReader)
    assert sync.keys() == asynchronous.keys()
    assert {"get_features", "get_summary", "get_tradeoff", "get_cohort_features", "get_features_at"} <= sync.keys()
    for name, signature in sync.items():
        other = asynchronous[name]
        assert list(signature.parameters.values()) == list(other.parameters.values()), name
        assert inspect.iscoroutinefunction(getattr(AsyncFeatureReader, name)), name


def test_bounds_and_arguments_come_from_the_query_core() -> None:
    settings = EngineSettings()
    assert resolve(None, 1_800_000_000, settings, now=0.0) == (30, 1_800_000_000.0)
    with pytest.raises(InvalidQuery):
        resolve(0, None, settings, now=0.0)
    assert distinct(["b", "a", "b"]) == ["b", "a"]
    assert len(distinct(f"c{i % MAX_COHORT_SIZE}" for i in range(3 * MAX_COHORT_SIZE))) == MAX_COHORT_SIZE
    with pytest.raises(CohortTooLarge):
        distinct(f"c{i}" for i in range(MAX_COHORT_SIZE + 1))
    with pytest.raises(CohortTooLarge):
        resolve_rows([("c", None)] * (MAX_COHORT_SIZE + 1), None, settings, now=0.0)


def test_the_readers_are_importable_from_the_package_as_the_readme_shows() -> None:
    import stream_features
    from stream_features import AsyncFeatureReader as PackageAsync
    from stream_features import FeatureReader as PackageReader

    assert PackageReader is FeatureReader and PackageAsync is AsyncFeatureReader
    with pytest.raises(AttributeError):
        stream_features.NoSuchReader  # noqa: B018
