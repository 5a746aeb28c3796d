// The dashboard-to-browser protocol v1 (docs/api.md, "Socket.IO"; fleet/frames.py on the server).
// Each driver travels as one 24-byte little-endian record, read here straight from a DataView
// into typed arrays: no object per driver.

export const VERSION = 1;
export const RECORD_SIZE = 24;
export const UNKNOWN_U16 = 65535;
export const STATUS = Object.freeze({ unknown: 0, available: 1, on_trip: 2, offline: 3 });
export const STATUS_NAMES = Object.freeze(["unknown", "available", "on_trip", "offline"]);

/** A DataView over an event's `data`, whatever shape the Socket.IO client handed it in. */
export function dataView(data) {
  if (data instanceof ArrayBuffer) return new DataView(data);
  if (ArrayBuffer.isView(data)) return new DataView(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("binary records expected");
}

/**
 * The records of one event as parallel typed arrays; `ts` is absolute epoch seconds,
 * heading and speed stay raw (x10, 65535 = unknown).
 */
export function decodeRecords(data, t0) {
  const view = dataView(data);
  if (view.byteLength % RECORD_SIZE !== 0) {
    throw new RangeError(`${view.byteLength} bytes is not a whole number of ${RECORD_SIZE}-byte records`);
  }
  const count = view.byteLength / RECORD_SIZE;
  const batch = {
    count,
    idx: new Uint32Array(count),
    lat: new Float64Array(count),
    lon: new Float64Array(count),
    ts: new Float64Array(count),
    heading: new Uint16Array(count),
    speed: new Uint16Array(count),
    status: new Uint8Array(count),
  };
  for (let i = 0, o = 0; i < count; i += 1, o += RECORD_SIZE) {
    batch.idx[i] = view.getUint32(o, true);
    batch.lat[i] = view.getInt32(o + 4, true) / 1e6;
    batch.lon[i] = view.getInt32(o + 8, true) / 1e6;
    batch.ts[i] = t0 + view.getInt32(o + 12, true) / 1000;
    batch.heading[i] = view.getUint16(o + 16, true);
    batch.speed[i] = view.getUint16(o + 18, true);
    batch.status[i] = view.getUint8(o + 20);
  }
  return batch;
}

/** Heading in degrees, or null when the producer did not send one. */
export function headingDegrees(raw) {
  return raw === UNKNOWN_U16 ? null : raw / 10;
}

/** Speed in km/h, or null when the producer did not send one. */
export function speedKmh(raw) {
  return raw === UNKNOWN_U16 ? null : raw / 10;
}
