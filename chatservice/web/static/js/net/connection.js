/**
 * @module net/connection
 * One WebSocket to the server at a time, reopened with back-off when it
 * closes. Each text message is one JSON object of the protocol, both ways.
 */

import { Emitter } from '../emitter.js';
import { Backoff } from './backoff.js';

/**
 * The WebSocket URL of the page's own server: `ws:` (or `wss:` for an
 * `https:` page) to `ws` beside the page, that is `/ws` for the page at `/`.
 * @param {Location|URL} location the page's location
 * @returns {string}
 */
export function socketUrl(location) {
  const url = new URL('ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.hash = '';
  url.search = '';
  return url.href;
}

/**
 * A WebSocket that reconnects by itself.
 *
 * Topics (see {@link Emitter}):
 * - `state` `(state, detail)`: `connecting`, `open`, `waiting` (detail:
 *   `{seconds}` until the next attempt) or `stopped` (no more attempts);
 * - `open` `()`: a connection is ready;
 * - `message` `(object)`: one JSON object from the server;
 * - `close` `({code, reason, wasClean, opened})`: a connection ended.
 */
export class ReconnectingSocket extends Emitter {
  /**
   * @param {string} url the WebSocket URL
   * @param {object} [options]
   * @param {Backoff} [options.backoff]
   * @param {typeof WebSocket} [options.WebSocket] for tests
   */
  constructor(url, { backoff = new Backoff(), WebSocket: Socket = globalThis.WebSocket } = {}) {
    super();
    this.url = url;
    this.backoff = backoff;
    this.Socket = Socket;
    /** @type {WebSocket|null} */
    this.socket = null;
    this.timer = null;
    this.stopped = true;
    this.state = 'stopped';
  }

  /** Connect now, and again whenever the connection ends, until {@link stop}. */
  start() {
    this.stopped = false;
    this.connectNow();
  }

  /** Open a connection now, cancelling a pending attempt (and closing a current socket). */
  connectNow() {
    this.stopped = false;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.socket) this.drop(this.socket);
    this.setState('connecting');
    let socket;
    try {
      socket = new this.Socket(this.url);
    } catch (error) {
      console.error('cannot open the WebSocket', error);
      this.retryLater();
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.addEventListener('open', () => {
      opened = true;
      this.setState('open');
      this.emit('open');
    });
    socket.addEventListener('message', (event) => this.received(event.data));
    socket.addEventListener('close', (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.emit('close', { code: event.code, reason: event.reason, wasClean: event.wasClean, opened });
      if (!this.stopped) this.retryLater();
    });
  }

  /**
   * Send one protocol object.
   * @param {object} message
   * @returns {boolean} whether it was handed to an open connection
   */
  send(message) {
    if (!this.socket || this.socket.readyState !== this.Socket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  /** Whether a connection is open. */
  get isOpen() {
    return this.socket !== null && this.socket.readyState === this.Socket.OPEN;
  }

  /**
   * Stop reconnecting; close the current connection too when `close` is true.
   * @param {boolean} [close=false]
   */
  stop(close = false) {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (close && this.socket) this.drop(this.socket);
    this.setState('stopped');
  }

  /** The connection worked (e.g. a login succeeded): the next delay starts small. */
  resetBackoff() {
    this.backoff.reset();
  }

  /** @private */
  drop(socket) {
    this.socket = null;
    try {
      socket.close(1000);
    } catch (error) {
      // already closed
    }
  }

  /** @private */
  retryLater() {
    const seconds = this.backoff.next();
    this.setState('waiting', { seconds, at: Date.now() + seconds * 1000 });
    this.timer = setTimeout(() => this.connectNow(), seconds * 1000);
  }

  /** @private */
  setState(state, detail = {}) {
    this.state = state;
    this.emit('state', state, detail);
  }

  /**
   * Parse a received text message: one JSON object (several lines, each an
   * object, are tolerated); anything else is reported and dropped.
   * @private
   */
  received(data) {
    if (typeof data !== 'string') return;
    for (const line of data.split('\n')) {
      if (!line.trim()) continue;
      let message;
      try {
        message = JSON.parse(line);
      } catch (error) {
        console.warn('not JSON, ignored:', line.slice(0, 200));
        continue;
      }
      if (message && typeof message === 'object' && typeof message.type === 'string') {
        this.emit('message', message);
      }
    }
  }
}
