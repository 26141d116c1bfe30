"""The nightly run's plan (which date, which folder, which model) and publishing its queue."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo

from avfleet.core import storage
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.serve.repository import parse_ref, versions


def plan_mining(
    now: str,
    timezone: str,
    mining_root: str,
    repo_uri: str,
    model: str,
    storage_config: storage.StorageConfig | None = None,
    date: str = "",
) -> dict[str, str]:
    """{date: `date`, or yesterday where the fleet drives; model-ref: NAME:VERSION; out: the run folder}."""
    try:
        instant = dt.datetime.fromisoformat(now.replace("Z", "+00:00"))
        tz = zoneinfo.ZoneInfo(timezone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as e:
        raise ConfigError("now/timezone", f"{now!r} in {timezone!r}: {e}") from e
    if instant.tzinfo is None:
        raise ConfigError("now", f"{now!r} has no UTC offset")
    if date:
        try:
            date = dt.date.fromisoformat(date).isoformat()
        except ValueError as e:
            raise ConfigError("date", f"{date!r}: expected YYYY-MM-DD") from e
    else:
        date = (instant.astimezone(tz).date() - dt.timedelta(days=1)).isoformat()
    name, version = parse_ref(model)
    if version is None:
        published = versions(repo_uri, name, storage_config)
        if not published:
            raise PermanentError(
                f"{repo_uri}: model {name!r} has no published version to mine with"
            )
        version = published[-1]
    return {
        "date": date,
        "model-ref": f"{name}:{version}",
        "out": storage.join(mining_root, date, f"{name}-v{version}"),
    }


def publish_queue(
    queue_uri: str, to_root: str, date: str, storage_config: storage.StorageConfig | None = None
) -> str:
    """Copy a run's queue to <to>/<date>.json, then point <to>/latest.json at it (both atomic).
    Beside them, <to>/label-config.xml: the Label Studio project's labeling config for these
    tasks (the taxonomy's classes as brush labels), so the project and its tasks agree."""
    from avfleet import taxonomy

    tasks = json.loads(storage.read_bytes(queue_uri, storage_config))
    published = storage.join(to_root, f"{date}.json")
    storage.atomic_write_text(published, json.dumps(tasks, indent=2), storage_config)
    label_config = storage.join(to_root, "label-config.xml")
    storage.atomic_write_text(label_config, taxonomy.label_studio_config(), storage_config)
    pointer = {
        "date": date,
        "queue": published,
        "tasks": len(tasks),
        "source": queue_uri,
        "label_config": label_config,
    }
    storage.atomic_write_text(
        storage.join(to_root, "latest.json"), json.dumps(pointer, indent=2), storage_config
    )
    return published
