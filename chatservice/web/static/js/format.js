/**
 * @module format
 * Times and durations as people read them. Pure functions.
 */

const pad = (n) => String(n).padStart(2, '0');
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * A message's time: `14:05` today, `3 Jun 14:05` another day this year,
 * `3 Jun 2025 14:05` otherwise (local time).
 * @param {number} seconds seconds since the epoch
 * @param {Date} [now]
 * @returns {string}
 */
export function formatTime(seconds, now = new Date()) {
  const date = new Date(seconds * 1000);
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  if (date.toDateString() === now.toDateString()) return clock;
  const day = `${date.getDate()} ${MONTHS[date.getMonth()]}`;
  if (date.getFullYear() === now.getFullYear()) return `${day} ${clock}`;
  return `${day} ${date.getFullYear()} ${clock}`;
}

/**
 * The full date and time with seconds, for tooltips and `datetime`:
 * `3 Jun 2025 14:05:09`.
 * @param {number} seconds seconds since the epoch
 * @returns {string}
 */
export function formatFullTime(seconds) {
  const date = new Date(seconds * 1000);
  return `${date.getDate()} ${MONTHS[date.getMonth()]} ${date.getFullYear()}` +
    ` ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/**
 * A duration, rounded up to whole seconds: `42 s`, `1 min 05 s`, `2 h 03 min`.
 * @param {number} seconds
 * @returns {string}
 */
export function formatDuration(seconds) {
  const total = Math.max(0, Math.ceil(seconds));
  if (total < 60) return `${total} s`;
  const minutes = Math.floor(total / 60);
  if (minutes < 60) return `${minutes} min ${pad(total % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${pad(minutes % 60)} min`;
}
