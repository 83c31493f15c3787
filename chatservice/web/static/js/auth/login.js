/**
 * @module auth/login
 * Logging in over an open connection: `hello` with the page's version, then
 * SCRAM-SHA-256 (preferred), the password itself, a guest name, or a new
 * account. Every answer becomes a {@link LoginOutcome}.
 */

import { RequestError } from '../net/requests.js';
import { CLIENT_VERSION } from '../version.js';
import { MECHANISM, ScramClient, ScramError, scramAvailable, scramPasswordBytes } from './scram.js';

/**
 * @typedef {object} LoginOutcome
 * @property {boolean} ok logged in
 * @property {string} [user] the name logged in as
 * @property {boolean} [guest]
 * @property {string} [method] `scram`, `password` or `guest`
 * @property {string} [reason] why not: the server's `reason` or error `code`
 * @property {string} [message] the server's words
 * @property {number} [retryAfter] seconds until a lock-out ends, when the server says
 */

/** Error codes with which a server without SCRAM answers `salt`. */
const OLD_SERVER_ERRORS = new Set(['unsupported_mechanism', 'invalid_command', 'not_logged_in']);

/** The server could not prove it holds the password's keys: the connection must be closed. */
export class UntrustedServer extends Error {
  constructor(detail) {
    super(`The server could not prove that it knows your password (${detail}); it may be an impostor.`);
    this.name = 'UntrustedServer';
  }
}

/**
 * A `login` reply (or an error) as a {@link LoginOutcome}.
 * @param {object} reply
 * @param {string} method
 * @returns {LoginOutcome}
 */
export function outcome(reply, method) {
  if (reply.type === 'login' && reply.success) {
    return { ok: true, user: reply.user, guest: Boolean(reply.guest), method };
  }
  return {
    ok: false,
    reason: reply.reason ?? reply.code ?? reply.type,
    message: reply.message ?? reply.additional_info ?? 'The server refused the login.',
    retryAfter: typeof reply.retry_after === 'number' ? reply.retry_after : undefined,
  };
}

/** Turn an error reply into an outcome; anything else (no connection) is thrown on. */
function refused(error) {
  if (error instanceof RequestError && error.reply) return outcome(error.reply, 'error');
  throw error;
}

/** Logs one connection in. */
export class LoginFlow {
  /**
   * @param {import('../net/requests.js').RequestChannel} requests
   * @param {object} [options]
   * @param {boolean} [options.scram] whether to try SCRAM (default: when WebCrypto is there)
   */
  constructor(requests, { scram = scramAvailable() } = {}) {
    this.requests = requests;
    this.scram = scram;
  }

  /**
   * Say the page's version: the reply is `hello`, or `outdated_client` (the
   * server then closes the connection).
   * @returns {Promise<object>}
   */
  hello() {
    return this.requests.request({ type: 'hello', version: CLIENT_VERSION });
  }

  /**
   * Log in as `username`: with SCRAM-SHA-256 when this browser can, falling
   * back to the password only when the server says the account has no SCRAM
   * keys (`scram_unavailable`) or the server has no SCRAM.
   * @param {string} username
   * @param {string} password
   * @returns {Promise<LoginOutcome>}
   * @throws {UntrustedServer} the server failed SCRAM's proof: close the connection
   */
  async login(username, password) {
    const bytes = this.scram ? scramPasswordBytes(password) : null;
    if (bytes === null) return this.withPassword(username, password);
    const client = new ScramClient(username, bytes);
    let challenge;
    try {
      challenge = await this.requests.request({ type: 'salt', mechanism: MECHANISM, message: client.first() });
    } catch (error) {
      if (error instanceof RequestError && OLD_SERVER_ERRORS.has(error.code)) {
        return this.withPassword(username, password);
      }
      return refused(error);
    }
    if (challenge.type === 'login') {
      if (challenge.reason === 'scram_unavailable') return this.withPassword(username, password);
      return outcome(challenge, 'scram');
    }
    let final;
    try {
      final = await client.final(String(challenge.message ?? ''));
    } catch (error) {
      if (error instanceof ScramError) throw new UntrustedServer(error.message);
      throw error;
    }
    const reply = await this.requests
      .request({ type: 'login', mechanism: MECHANISM, message: final })
      .catch(refused);
    if (reply.ok === false) return reply;
    if (reply.success) {
      try {
        client.verifyServer(reply.server_final);
      } catch (error) {
        throw new UntrustedServer(error.message);
      }
    }
    return outcome(reply, 'scram');
  }

  /**
   * Log in sending the password itself (a browser without WebCrypto here,
   * an account without SCRAM keys, or an old server).
   * @param {string} username
   * @param {string} password
   * @returns {Promise<LoginOutcome>}
   */
  async withPassword(username, password) {
    const reply = await this.requests
      .request({ type: 'login', user: username, password })
      .catch(refused);
    return reply.ok === false ? reply : outcome(reply, 'password');
  }

  /**
   * Log in as a guest named `username` (`guests_disabled` when the server does not allow it).
   * @param {string} username
   * @returns {Promise<LoginOutcome>}
   */
  async guest(username) {
    const reply = await this.requests.request({ type: 'guest', user: username }).catch(refused);
    return reply.ok === false ? reply : outcome(reply, 'guest');
  }

  /**
   * Create the account `username`, then log in with it.
   * (`registration_disabled` when the server does not take new accounts.)
   * @param {string} username
   * @param {string} password
   * @returns {Promise<LoginOutcome>}
   */
  async register(username, password) {
    const reply = await this.requests
      .request({ type: 'register', user: username, password })
      .catch(refused);
    if (reply.ok === false) return reply;
    if (!reply.status) return outcome(reply, 'register');
    return this.login(username, password);
  }
}
