/**
 * @module state/conversations
 * Conversations and their messages, as plain data: "everyone" (broadcasts),
 * one per direct-message partner, one per room. Pure: no DOM, no network.
 */

/** The key of the broadcast conversation. */
export const EVERYONE = 'everyone';

/** @param {string} user @returns {string} the key of the direct conversation with `user` */
export const dmKey = (user) => `dm:${user}`;

/** @param {number} room @returns {string} the key of room `room`'s conversation */
export const roomKey = (room) => `room:${room}`;

/**
 * What a key names.
 * @param {string} key
 * @returns {{kind: 'everyone'}|{kind: 'dm', user: string}|{kind: 'room', room: number}}
 */
export function parseKey(key) {
  if (key.startsWith('dm:')) return { kind: 'dm', user: key.slice(3) };
  if (key.startsWith('room:')) return { kind: 'room', room: Number(key.slice(5)) };
  return { kind: 'everyone' };
}

/**
 * The conversation a history channel (`broadcast`, `room:2`) belongs to.
 * @param {string} channel
 * @returns {string|null}
 */
export function channelKey(channel) {
  if (channel === 'broadcast') return EVERYONE;
  const match = /^room:(\d+)$/.exec(channel);
  return match ? roomKey(Number(match[1])) : null;
}

/**
 * @typedef {object} ChatMessage
 * @property {string} id unique in its conversation (`#seq` for numbered messages)
 * @property {'chat'|'system'} kind a person's message, or a note of the page
 * @property {string} [from] the sender (chat messages)
 * @property {string} text
 * @property {number} timestamp seconds since the epoch
 * @property {boolean} [own] sent by this user
 * @property {boolean} [offline] kept by the server while this user was away
 * @property {boolean} [history] loaded with `read`
 * @property {string} [note] a remark on delivery: "kept until hans is back", ...
 */

let localIds = 0;

/**
 * A message id for a message that has no number of the server.
 * @returns {string}
 */
export function localId() {
  localIds += 1;
  return `local-${localIds}`;
}

/** One conversation: its messages in time order, its unread count. */
export class Conversation {
  /**
   * @param {string} key see {@link EVERYONE}, {@link dmKey}, {@link roomKey}
   */
  constructor(key) {
    this.key = key;
    const parsed = parseKey(key);
    this.kind = parsed.kind;
    this.user = parsed.user;
    this.room = parsed.room;
    /** @type {ChatMessage[]} */
    this.messages = [];
    this.ids = new Set();
    this.unread = 0;
    /** Room members (rooms only). @type {string[]} */
    this.members = [];
    /** This user left the room. */
    this.left = false;
  }

  /** The name shown for it: `everyone`, the partner's name, `room 2`. */
  get title() {
    if (this.kind === 'dm') return this.user;
    if (this.kind === 'room') return `room ${this.room}`;
    return EVERYONE;
  }

  /** The time of its latest message (0 when empty). */
  get lastTimestamp() {
    return this.messages.length ? this.messages[this.messages.length - 1].timestamp : 0;
  }

  /**
   * Add `message` in time order (after messages of the same time); a message
   * whose id is already here is ignored.
   * @param {ChatMessage} message
   * @returns {boolean} whether it was added
   */
  add(message) {
    if (this.ids.has(message.id)) return false;
    this.ids.add(message.id);
    let index = this.messages.length;
    while (index > 0 && this.messages[index - 1].timestamp > message.timestamp) index -= 1;
    this.messages.splice(index, 0, message);
    return true;
  }

  /**
   * The message with `id`, if any (to add a delivery note to it).
   * @param {string} id
   * @returns {ChatMessage|undefined}
   */
  find(id) {
    return this.messages.find((message) => message.id === id);
  }
}
