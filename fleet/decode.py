"""The one decode step between Kafka and the rest of the code: any record in, a message or a refusal out.

Every consumer of the project (the dashboard's feeds, the matcher, the simulator's answer reader)
turns a record into a message only through a :class:`Decoder` of this module. A decoder is total:
for any key, any value and any headers it returns either a valid message or a :class:`Refusal`
naming one of its documented reasons, and it never raises. So everything after it can trust its
input, and no record, however it was made, can stop a consumer. A decoder that fails in a way
nobody foresaw (a bug) still returns a refusal, ``internal_error``, naming the exception's class.

The reasons per topic are in ``docs/api.md``; the checks themselves live with the messages in
:mod:`fleet.schema`, :mod:`fleet.rides` and :mod:`fleet.zones`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from fleet import rides, schema, zones
from fleet.rides import RideMatch, RideRequest
from fleet.schema import Fix, InvalidMessage
from fleet.zones import Zone, ZoneDeleted, ZoneEvent

M = TypeVar("M")

# Not the record's fault: the code that decoded or applied it raised. Counted and dead-lettered
# like any refusal, with the exception's class, so one bug costs one record and not the consumer.
INTERNAL_ERROR = "internal_error"
MAX_DETAIL_CHARS = 400


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a record is not a message: a reason of :data:`REASONS`, a sentence, and for
    ``internal_error`` the exception's class."""

    reason: str
    detail: str
    exception: str | None = None

    @classmethod
    def of_exception(cls, error: BaseException) -> Refusal:
        name = f"{type(error).__module__}.{type(error).__qualname__}"
        return cls(INTERNAL_ERROR, ascii(f"{type(error).__name__}: {error}")[:MAX_DETAIL_CHARS], name)


class Decoder(Generic[M]):
    """A total decoder for one topic's records: ``decoder(key, value, now)`` is a message or a Refusal."""

    def __init__(
        self, contract: str, parse: Callable[[bytes | None, bytes | None, float], M], reasons: tuple[str, ...]
    ):
        self.contract = contract
        self.reasons = (*reasons, INTERNAL_ERROR)
        self._parse = parse

    def __call__(self, key: bytes | None, value: bytes | None, now: float) -> M | Refusal:
        try:
            return self._parse(key, value, now)
        except InvalidMessage as e:
            return Refusal(e.reason, e.detail[:MAX_DETAIL_CHARS])
        except Exception as e:  # noqa: BLE001 - the point of this class: nothing a record holds escapes
            return Refusal.of_exception(e)

    def __repr__(self) -> str:
        return f"Decoder({self.contract!r})"


_POINT_REASONS = (schema.BAD_LATITUDE, schema.BAD_LONGITUDE, schema.BAD_TIMESTAMP, schema.FUTURE_TIMESTAMP)

FIXES: Decoder[Fix] = Decoder("driver-location", schema.parse_fix_record, schema.REASONS)
REQUESTS: Decoder[RideRequest] = Decoder(
    "ride-requests",
    lambda _key, value, now: rides.parse_request(value, now),
    (*schema.SHARED_REASONS, rides.BAD_REQUEST_ID, rides.BAD_RIDER_ID, *_POINT_REASONS),
)
MATCHES: Decoder[RideMatch] = Decoder(
    "ride-matches",
    lambda key, value, now: rides.parse_match(value, now, key),
    (
        *schema.SHARED_REASONS,
        schema.KEY_MISMATCH,
        rides.BAD_REQUEST_ID,
        rides.BAD_RIDER_ID,
        rides.BAD_OUTCOME,
        *_POINT_REASONS,
        rides.BAD_DRIVER_ID,
        rides.BAD_DISTANCE,
        rides.BAD_ETA,
    ),
)
# The compacted zones topic: key = zone id (required), value = a GeoJSON Feature, none = the zone is deleted.
ZONES: Decoder[Zone | ZoneDeleted] = Decoder(
    "zones",
    lambda key, value, _now: zones.decode_zone(key, value),
    (*schema.SHARED_REASONS, zones.MISSING_KEY, *zones.ZONE_REASONS),
)
ZONE_EVENTS: Decoder[ZoneEvent] = Decoder(
    "zone-events",
    zones.parse_event,
    (
        *schema.SHARED_REASONS,
        schema.KEY_MISMATCH,
        schema.BAD_DRIVER_ID,
        zones.BAD_ZONE_ID,
        zones.BAD_ZONE_NAME,
        zones.BAD_EVENT,
        zones.BAD_SOURCE,
        schema.BAD_LATITUDE,
        schema.BAD_LONGITUDE,
        schema.BAD_TIMESTAMP,
        schema.FUTURE_TIMESTAMP,
    ),
)
DECODERS = (FIXES, REQUESTS, MATCHES, ZONES, ZONE_EVENTS)
REASONS = tuple(dict.fromkeys(reason for decoder in DECODERS for reason in decoder.reasons))
