/**
 * @module net/requests
 * Requests with ids: each request gets a fresh `id`, and the reply that
 * echoes it settles the request's promise.
 */

/** An `error` reply (`code`, `message`), or no reply at all (`code` `closed`/`timeout`/`offline`). */
export class RequestError extends Error {
  /**
   * @param {string} code the protocol's error code, or `closed`, `timeout`, `offline`
   * @param {string} message for people
   * @param {object} [reply] the server's reply, when there was one
   */
  constructor(code, message, reply = undefined) {
    super(message);
    this.name = 'RequestError';
    this.code = code;
    this.reply = reply;
  }
}

/**
 * The most bytes of one request: the server drops a longer line (or
 * WebSocket message) with an error that cannot name the request.
 */
export const MAX_REQUEST_BYTES = 8192;

/** Matches replies to requests by `id`. */
export class RequestChannel {
  /**
   * @param {(message: object) => boolean} send hands a message to the
   *   connection; `false` when there is none
   * @param {object} [options]
   * @param {number} [options.timeout=20000] milliseconds to wait for a reply
   */
  constructor(send, { timeout = 20000 } = {}) {
    this.sendMessage = send;
    this.timeout = timeout;
    this.nextId = 1;
    /** @type {Map<number, {resolve: Function, reject: Function, timer: *}>} */
    this.pending = new Map();
  }

  /**
   * Send `message` with a new `id`.
   * @param {object} message a request, without `id`
   * @returns {Promise<object>} the reply; rejected with a {@link RequestError}
   *   for an `error` reply, no connection, its loss, no reply in time, or a
   *   request over {@link MAX_REQUEST_BYTES}
   */
  request(message) {
    const id = this.nextId++;
    const request = { ...message, id };
    return new Promise((resolve, reject) => {
      if (new TextEncoder().encode(JSON.stringify(request)).length > MAX_REQUEST_BYTES) {
        reject(new RequestError('line_too_long', 'This is too long to send: shorten it.'));
        return;
      }
      if (!this.sendMessage(request)) {
        reject(new RequestError('offline', 'Not connected to the server.'));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestError('timeout', 'The server did not answer in time.'));
      }, this.timeout);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  /**
   * Settle the request a received message answers, if any.
   * @param {object} message
   * @returns {boolean} whether it was a reply to a pending request
   */
  handle(message) {
    const entry = this.pending.get(message.id);
    if (entry === undefined) return false;
    this.pending.delete(message.id);
    clearTimeout(entry.timer);
    if (message.type === 'error') {
      entry.reject(new RequestError(message.code, message.message, message));
    } else {
      entry.resolve(message);
    }
    return true;
  }

  /** The connection ended: every pending request fails with `closed`. */
  failAll() {
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(new RequestError('closed', 'The connection to the server was lost.'));
    }
    this.pending.clear();
  }
}
