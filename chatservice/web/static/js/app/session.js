/**
 * @module app/session
 * The life of the connection and of the login: `hello` on every new
 * connection, logging in (and in again after a reconnect, with the
 * credentials kept in memory only), what to load after a login, and what the
 * end of a connection means (logout, inactivity, shutdown, an outdated page,
 * a ban, a lost connection).
 */

import { UntrustedServer } from '../auth/login.js';
import { formatDuration } from '../format.js';
import { RequestError } from '../net/requests.js';

/** Server messages that end the connection. */
const ENDINGS = new Set(['disconnect', 'shutdown', 'outdated_client', 'banned']);
/** Login refusals after which the same credentials may work later. */
const TRANSIENT = new Set(['already_logged_in', 'unavailable', 'closed', 'offline', 'timeout']);
/** How often a login after a reconnect is tried again while the old session lingers. */
const RELOGIN_TRIES = 5;
/** The longest look back for missed messages after a new login, in seconds. */
const MAX_CATCH_UP = 24 * 3600;
const SEEN_KEY = 'chatservice.seen.';

/**
 * @typedef {object} Credentials
 * @property {'login'|'register'|'guest'} mode
 * @property {string} username
 * @property {string} password empty for a guest
 */

/** Connects, logs in, and keeps both going. */
export class Session {
  /**
   * @param {object} parts
   * @param {import('../state/store.js').Store} parts.store
   * @param {import('../net/connection.js').ReconnectingSocket} parts.socket
   * @param {import('../net/requests.js').RequestChannel} parts.requests
   * @param {import('../auth/login.js').LoginFlow} parts.login
   * @param {import('./events.js').ServerEvents} parts.events
   * @param {import('./actions.js').ChatActions} parts.actions
   * @param {import('../typing.js').TypingSender} parts.typing
   * @param {Storage|null} [parts.storage] where the time of the last visit is kept
   */
  constructor({ store, socket, requests, login, events, actions, typing, storage = null }) {
    Object.assign(this, { store, socket, requests, login, events, actions, typing, storage });
    /** @type {Credentials|null} kept in memory only, to log in again after a reconnect */
    this.credentials = null;
    /** Log in with {@link credentials} as soon as the connection is ready. */
    this.loginWanted = false;
    /** `hello` was answered on the current connection. */
    this.ready = false;
    this.loggedIn = false;
    this.lastUser = null;
    /** Server time up to which broadcasts and room messages were seen (for catching up). */
    this.seenUntil = null;
    this.reloginTries = 0;
    this.ended = null;
    /** A login is under way (a second one would be refused as `already_logged_in`). */
    this.loggingIn = false;
  }

  /** Wire the socket's topics and connect. */
  start() {
    this.socket.on('state', (state, detail) => this.store.setConnection(state, detail));
    this.socket.on('open', () => this.opened());
    this.socket.on('message', (message) => this.received(message));
    this.socket.on('close', (info) => this.closed(info));
    this.socket.start();
  }

  // Connection --------------------------------------------------------------

  /** @private A new connection: say hello, then log in again if the user was. */
  async opened() {
    this.ready = false;
    this.ended = null;
    let reply;
    try {
      reply = await this.login.hello();
    } catch (error) {
      return; // the connection went away again; the next one says hello
    }
    if (reply.type !== 'hello') return; // outdated_client: see received()
    this.ready = true;
    this.store.dismiss('connection');
    if (this.loginWanted && this.credentials) this.logIn(this.credentials, true);
  }

  /** @private */
  received(message) {
    const reply = message.id !== undefined && this.requests.handle(message);
    if (ENDINGS.has(message.type)) this.end(message);
    else if (!reply) this.events.handle(message);
  }

  /** @private The server says it closes the connection, and why. */
  end(message) {
    const reason = message.type === 'disconnect' ? message.reason : message.type;
    this.ended = reason;
    const text = message.message ?? `Disconnected (${reason}).`;
    if (reason === 'logout') {
      this.forget();
      return;
    }
    if (reason === 'outdated_client' || reason === 'banned') {
      this.socket.stop();
      this.loginWanted = false;
      const actions = reason === 'outdated_client'
        ? [{ label: 'Reload the page', run: () => globalThis.location.reload() }] : [];
      this.store.notify('error', text, { topic: 'connection', actions });
      return;
    }
    if (reason === 'timeout' || reason === 'kicked') {
      // Not logged in again by itself: the user decides.
      this.loginWanted = false;
      this.leaveChat(text);
      this.store.notify('warning', text, {
        topic: reason,
        actions: this.credentials ? [{ label: 'Log in again', run: () => this.logInAgain() }] : [],
      });
      return;
    }
    // shutdown, flood, server_full, too_many_connections: come back later.
    this.store.notify('warning', `${text} The page reconnects by itself.`, { topic: 'connection' });
  }

  /** @private */
  closed(info) {
    this.requests.failAll();
    this.typing.forget();
    this.ready = false;
    const wasLoggedIn = this.loggedIn;
    this.loggedIn = false;
    if (wasLoggedIn) {
      this.markSeen(this.store.serverNow());
      this.loginWanted = this.credentials !== null && this.ended !== 'timeout';
      if (this.ended === null) {
        this.store.notify('warning', 'The connection to the server was lost. Reconnecting…', { topic: 'connection' });
      }
    } else if (this.ended === null && !info.opened) {
      this.store.notify('warning', 'Cannot reach the server. Retrying…', { topic: 'connection' });
    }
  }

  // Logging in ----------------------------------------------------------------

  /**
   * The login form was submitted.
   * @param {'login'|'register'|'guest'} mode
   * @param {string} username
   * @param {string} password
   */
  submit(mode, username, password) {
    if (this.loggingIn || this.loggedIn) return;
    username = username.trim();
    if (!username) {
      this.store.loginMessage('Enter a user name.');
      return;
    }
    if (mode !== 'guest' && !password) {
      this.store.loginMessage('Enter the password.');
      return;
    }
    this.credentials = { mode, username, password: mode === 'guest' ? '' : password };
    this.reloginTries = 0;
    if (this.ready) {
      this.logIn(this.credentials, false);
    } else {
      this.loginWanted = true;
      this.store.loginMessage('Connecting to the server…');
      if (this.socket.state === 'waiting' || this.socket.state === 'stopped') this.socket.connectNow();
    }
  }

  /** Log in again with the kept credentials (after an inactivity logout). */
  logInAgain() {
    this.store.dismiss('timeout');
    if (!this.credentials) return;
    this.loginWanted = true;
    if (this.ready) this.logIn(this.credentials, true);
    else this.socket.connectNow();
  }

  /** @private */
  async logIn(credentials, again) {
    if (this.loggingIn) return;
    this.loginWanted = false;
    this.loggingIn = true;
    if (!again) this.store.loginMessage('Logging in…');
    const { mode, username, password } = credentials;
    let outcome;
    try {
      if (mode === 'guest') outcome = await this.login.guest(username);
      else if (mode === 'register') outcome = await this.login.register(username, password);
      else outcome = await this.login.login(username, password);
    } catch (error) {
      if (error instanceof UntrustedServer) {
        this.credentials = null;
        this.socket.stop(true);
        this.leaveChat(error.message);
        this.store.notify('error', error.message, {
          topic: 'connection', actions: [{ label: 'Reconnect', run: () => this.socket.start() }],
        });
        return;
      }
      outcome = { ok: false, reason: error instanceof RequestError ? error.code : 'closed', message: error.message };
    } finally {
      this.loggingIn = false;
    }
    if (outcome.ok) {
      if (mode === 'register') credentials.mode = 'login';
      await this.loggedInAs(outcome, again);
    } else {
      this.refused(outcome, again);
    }
  }

  /** @private A login was refused: say why (with the time left of a lock-out). */
  refused(outcome, again) {
    if (outcome.reason === 'guests_disabled') this.store.refused.guest = true;
    if (outcome.reason === 'registration_disabled') this.store.refused.register = true;
    if (again && TRANSIENT.has(outcome.reason) && this.reloginTries < RELOGIN_TRIES) {
      this.reloginTries += 1;
      setTimeout(() => {
        if (this.ready && this.credentials) this.logIn(this.credentials, true);
        else this.loginWanted = true;
      }, 1000 * this.reloginTries);
      return;
    }
    if (!TRANSIENT.has(outcome.reason)) this.credentials = null;
    let text = outcome.message;
    let until;
    if (outcome.retryAfter !== undefined) {
      until = Date.now() + outcome.retryAfter * 1000;
      text = `${text} (about ${formatDuration(outcome.retryAfter)} left)`;
    }
    this.leaveChat(text, until);
  }

  /** @private Logged in: show the chat and load what it needs. */
  async loggedInAs(outcome, again) {
    if (outcome.user !== this.lastUser) {
      this.store.reset();
      this.actions.resetHistory();
      this.seenUntil = this.loadSeen(outcome.user);
    }
    this.lastUser = outcome.user;
    this.loggedIn = true;
    this.reloginTries = 0;
    this.socket.resetBackoff();
    this.store.dismiss('connection');
    this.store.dismiss('timeout');
    this.store.loginMessage('');
    this.store.setMe({ name: outcome.user, guest: outcome.guest, busy: false, hidden: false, autoReply: '' });
    if (again) this.store.notify('info', 'Reconnected.', { topic: 'connection' });
    await this.actions.status(false);
    await Promise.all([this.actions.refreshUsers(), this.actions.loadRooms()]);
    const now = this.store.serverNow();
    const since = this.seenUntil === null ? now : Math.max(this.seenUntil, now - MAX_CATCH_UP);
    if (this.loggedIn) await this.actions.loadHistory(since - 1);
  }

  /** @private Back to the login form, saying `text`. */
  leaveChat(text, retryUntil) {
    this.store.setMe(null);
    this.store.loginMessage(text, retryUntil);
  }

  /** Log out: the server says goodbye and the page forgets the credentials. */
  async logout() {
    this.markSeen(this.store.serverNow());
    this.credentials = null;
    this.loginWanted = false;
    try {
      await this.requests.request({ type: 'logout' });
    } catch (error) {
      this.forget();
    }
  }

  /** @private Forget the user (after a logout). */
  forget() {
    this.credentials = null;
    this.loginWanted = false;
    this.loggedIn = false;
    this.lastUser = null;
    this.store.setMe(null);
    this.store.reset();
    this.store.clearNotices();
    this.store.loginMessage('You have logged out.');
  }

  /**
   * The user changed their password: log in with the new one after a reconnect.
   * @param {string} password
   */
  passwordChanged(password) {
    if (this.credentials) this.credentials.password = password;
  }

  // The last visit ------------------------------------------------------------

  /**
   * Broadcasts or room messages up to `timestamp` (server clock) were seen.
   * @param {number} timestamp
   */
  markSeen(timestamp) {
    if (!(timestamp > (this.seenUntil ?? 0))) return;
    this.seenUntil = timestamp;
    const user = this.store.me ? this.store.me.name : this.lastUser;
    if (!this.storage || !user) return;
    try {
      this.storage.setItem(SEEN_KEY + user, String(timestamp));
    } catch (error) {
      // storage full or refused: the catch-up is only a convenience
    }
  }

  /** @private The time of `user`'s last visit on this browser, if known. */
  loadSeen(user) {
    if (!this.storage) return null;
    const value = Number(this.storage.getItem(SEEN_KEY + user));
    return Number.isFinite(value) && value > 0 ? value : null;
  }
}
