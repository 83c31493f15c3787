/**
 * @module auth/scram
 * The client side of a SCRAM-SHA-256 login (RFC 5802, RFC 7677) with the
 * browser's WebCrypto (`crypto.subtle`): the password never crosses the
 * wire, and the server proves that it holds the password's keys.
 *
 * WebCrypto exists only in secure contexts (https, or http on localhost /
 * 127.0.0.1); see {@link scramAvailable}.
 */

export const MECHANISM = 'SCRAM-SHA-256';
/** The iteration counts the server may ask for (as the server's own range). */
export const MIN_ITERATIONS = 4096;
export const MAX_ITERATIONS = 1000000;
const NONCE_BYTES = 18;

/** A SCRAM exchange that cannot go on: a bad challenge, or a server that failed its proof. */
export class ScramError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ScramError';
  }
}

/** Whether this browser can log in with SCRAM here (WebCrypto in a secure context). */
export function scramAvailable() {
  return Boolean(globalThis.crypto && globalThis.crypto.subtle && globalThis.isSecureContext !== false);
}

// Characters SASLprep (RFC 4013) maps to a space (C.1.2) or to nothing (B.1).
const SASL_MAPPED = /[\u00a0\u1680\u2000-\u200d\u202f\u205f\u3000\u00ad\u034f\u1806\u180b-\u180d\u2060\ufe00-\ufe0f\ufeff]/u;

/**
 * The bytes SCRAM derives keys from, when this page can compute them exactly
 * as the server does: the server prepares a password with SASLprep, or takes
 * it as it is when SASLprep refuses it. A password that SASLprep leaves
 * unchanged (every ASCII password, and most others) is its own UTF-8 bytes
 * either way. For one that SASLprep would change (a non-ASCII space, a
 * compatibility character) this returns `null`: the caller logs in with
 * the password instead of guessing.
 * @param {string} password
 * @returns {Uint8Array|null}
 */
export function scramPasswordBytes(password) {
  const ascii = /^[\x00-\x7f]*$/.test(password);
  if (!ascii && (SASL_MAPPED.test(password) || password.normalize('NFKC') !== password)) {
    return null;
  }
  return new TextEncoder().encode(password);
}

/**
 * A user name as a SCRAM saslname: `=` as `=3D`, `,` as `=2C`.
 * @param {string} username
 * @returns {string}
 */
export function escapeUsername(username) {
  return username.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

/** @param {Uint8Array} bytes @returns {string} */
export function toBase64(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** @param {string} text @returns {Uint8Array} */
export function fromBase64(text) {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

const utf8 = (text) => new TextEncoder().encode(text);

async function hmac(key, message) {
  const cryptoKey = await crypto.subtle.importKey(
    'raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'],
  );
  return new Uint8Array(await crypto.subtle.sign('HMAC', cryptoKey, message));
}

async function sha256(data) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', data));
}

async function pbkdf2(password, salt, iterations) {
  const key = await crypto.subtle.importKey('raw', password, 'PBKDF2', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits(
    { name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, key, 256,
  );
  return new Uint8Array(bits);
}

/** Parse `a=1,b=2` into a Map of the first occurrence of each letter. */
function attributes(message) {
  const found = new Map();
  for (const item of message.split(',')) {
    if (item.length < 2 || item[1] !== '=') throw new ScramError('malformed server message');
    if (!found.has(item[0])) found.set(item[0], item.slice(2));
  }
  return found;
}

/** Constant-time enough comparison of two strings of the server's proof. */
function sameText(a, b) {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i += 1) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}

/**
 * One SCRAM-SHA-256 exchange:
 * `first()` → server-first → `await final(serverFirst)` → server-final →
 * `verifyServer(serverFinal)`.
 */
export class ScramClient {
  /**
   * @param {string} username
   * @param {Uint8Array} passwordBytes from {@link scramPasswordBytes}
   * @param {object} [options]
   * @param {string} [options.nonce] the client nonce (tests); random otherwise
   */
  constructor(username, passwordBytes, { nonce } = {}) {
    this.username = username;
    this.passwordBytes = passwordBytes;
    this.nonce = nonce ?? toBase64(crypto.getRandomValues(new Uint8Array(NONCE_BYTES)));
    this.firstBare = `n=${escapeUsername(username)},r=${this.nonce}`;
    this.serverSignature = null;
  }

  /** The client-first message, `n,,n=USER,r=NONCE`. */
  first() {
    return `n,,${this.firstBare}`;
  }

  /**
   * The client-final message (with the proof) for the server-first message.
   * @param {string} serverFirst `r=NONCE,s=SALT,i=ITERATIONS`
   * @returns {Promise<string>}
   * @throws {ScramError} a challenge that is not this exchange's or is out of range
   */
  async final(serverFirst) {
    const fields = attributes(serverFirst);
    const nonce = fields.get('r') ?? '';
    const salt = fields.get('s') ?? '';
    const iterations = Number(fields.get('i'));
    if (fields.has('m')) throw new ScramError('the server asks for an extension');
    if (!nonce.startsWith(this.nonce) || nonce.length <= this.nonce.length) {
      throw new ScramError('the server changed the nonce');
    }
    if (!Number.isInteger(iterations) || iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS) {
      throw new ScramError('the iteration count is out of range');
    }
    let saltBytes;
    try {
      saltBytes = fromBase64(salt);
    } catch (error) {
      throw new ScramError('the salt is not base64');
    }
    if (saltBytes.length === 0) throw new ScramError('the salt is empty');
    const salted = await pbkdf2(this.passwordBytes, saltBytes, iterations);
    const clientKey = await hmac(salted, utf8('Client Key'));
    const storedKey = await sha256(clientKey);
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = utf8(`${this.firstBare},${serverFirst},${withoutProof}`);
    const clientSignature = await hmac(storedKey, authMessage);
    const proof = clientKey.map((byte, i) => byte ^ clientSignature[i]);
    const serverKey = await hmac(salted, utf8('Server Key'));
    this.serverSignature = toBase64(await hmac(serverKey, authMessage));
    return `${withoutProof},p=${toBase64(proof)}`;
  }

  /**
   * Check the server-final message: the server must know the password's keys.
   * @param {string|undefined} serverFinal `v=SIGNATURE`
   * @throws {ScramError} missing, an error (`e=`), or the wrong signature
   */
  verifyServer(serverFinal) {
    if (typeof serverFinal !== 'string' || this.serverSignature === null) {
      throw new ScramError('the server sent no proof');
    }
    const fields = attributes(serverFinal);
    if (fields.has('e')) throw new ScramError(`the server refused: ${fields.get('e')}`);
    if (!sameText(fields.get('v') ?? '', this.serverSignature)) {
      throw new ScramError('the server signature is wrong');
    }
  }
}
