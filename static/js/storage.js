// The reader's choices on this device (localStorage). Storage may be refused (private mode, a policy):
// then nothing is remembered and a choice lasts until the page is closed.

/** The value remembered under `key`, or null. */
export function recall(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

/** Remember `value` under `key`; null forgets it. */
export function remember(key, value) {
  try {
    if (value === null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, value);
  } catch {
    // Refused: see above.
  }
}
