/**
 * @module net/backoff
 * Exponential back-off with jitter for reconnecting. Pure: the random
 * source is injectable.
 */

/**
 * Delays that double from `base` up to `cap` seconds; each is drawn at
 * random from the upper half of its step ("equal jitter"), so that clients
 * cut off together do not all come back in the same instant.
 */
export class Backoff {
  /**
   * @param {object} [options]
   * @param {number} [options.base=0.5] the first step, in seconds
   * @param {number} [options.cap=30] the largest delay, in seconds
   * @param {() => number} [options.random=Math.random] a number in [0, 1)
   */
  constructor({ base = 0.5, cap = 30, random = Math.random } = {}) {
    this.base = base;
    this.cap = cap;
    this.random = random;
    this.attempt = 0;
  }

  /**
   * The delay before the next attempt, in seconds; each call moves one step on.
   * @returns {number}
   */
  next() {
    const step = Math.min(this.cap, this.base * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 32);
    return step / 2 + (this.random() * step) / 2;
  }

  /** Start again from the first step (after a connection that worked). */
  reset() {
    this.attempt = 0;
  }
}
