/**
 * @module typing
 * Telling others that this user is typing, without flooding the server:
 * `typing on` at most every {@link THROTTLE} ms while keys are pressed,
 * `typing off` after {@link IDLE} ms without a key, on sending, and when the
 * user turns to another conversation.
 */

/** Milliseconds between two `typing on` for the same conversation. */
export const THROTTLE = 3000;
/** Milliseconds without typing after which `typing off` is sent. */
export const IDLE = 5000;

/**
 * Whom a conversation's typing notices go to: the partner of a direct
 * conversation, everyone for "everyone" (`''`), nobody for a room (the
 * protocol's notices go to one user or to everyone).
 * @param {import('./state/conversations.js').Conversation} conversation
 * @returns {string|null} a user name, `''` for everyone, or `null`
 */
export function typingTarget(conversation) {
  if (conversation.kind === 'dm') return conversation.user;
  if (conversation.kind === 'everyone') return '';
  return null;
}

/** Sends throttled, expiring typing notices. */
export class TypingSender {
  /**
   * @param {(status: boolean, to: string) => void} send sends `typing`
   *   (`to` `''`: everyone)
   * @param {object} [options]
   * @param {() => number} [options.clock=Date.now]
   * @param {number} [options.throttle]
   * @param {number} [options.idle]
   */
  constructor(send, { clock = Date.now, throttle = THROTTLE, idle = IDLE } = {}) {
    this.send = send;
    this.clock = clock;
    this.throttle = throttle;
    this.idle = idle;
    /** The target `typing on` was last sent to, or `null` when off. */
    this.target = null;
    this.sentAt = 0;
    this.idleTimer = null;
  }

  /**
   * A key was typed in a conversation with typing `target` (see {@link typingTarget}).
   * @param {string|null} target
   */
  typed(target) {
    if (target === null) {
      this.stop();
      return;
    }
    if (this.target !== null && this.target !== target) this.stop();
    const now = this.clock();
    if (this.target === null || now - this.sentAt >= this.throttle) {
      this.target = target;
      this.sentAt = now;
      this.send(true, target);
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stop(), this.idle);
  }

  /** Send `typing off` if `typing on` was sent (on sending, idling, switching). */
  stop() {
    clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (this.target === null) return;
    const target = this.target;
    this.target = null;
    this.send(false, target);
  }

  /** The connection was lost: what was sent is void; send nothing. */
  forget() {
    clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.target = null;
  }
}
