/**
 * @module state/store
 * Everything the page shows, in one place, and the topics views listen to.
 * Changing state goes through the methods here, which say what changed:
 *
 * - `me`: who is logged in and their status;
 * - `users`: the user list;
 * - `conversations`: the conversation list (added, unread counts);
 * - `messages` `(key)`: the messages of conversation `key`;
 * - `current`: another conversation was opened;
 * - `typing`: who is typing;
 * - `connection`: the connection's state;
 * - `notices`: the notices shown at the top;
 * - `login` `(text, retryUntil)`: what the login form says;
 * - `reset`: everything was forgotten (a logout, another user).
 */

import { Emitter } from '../emitter.js';
import { Conversation, EVERYONE } from './conversations.js';
import { UserDirectory } from './users.js';

/** How long a typing notice lasts without news, in milliseconds (the server ends it after 5 s). */
export const TYPING_TTL = 6000;

let noticeIds = 0;

/**
 * @typedef {object} Notice
 * @property {number} id
 * @property {'info'|'warning'|'error'} level
 * @property {string} text
 * @property {string} [topic] a notice replaces the earlier one of the same topic
 * @property {Array<{label: string, run: Function}>} actions buttons shown with it
 * @property {number} [retryUntil] time (ms) until which a countdown runs
 */

/** The page's state. */
export class Store extends Emitter {
  constructor() {
    super();
    /** @type {{name: string, guest: boolean, busy: boolean, autoReply: string, hidden: boolean}|null} */
    this.me = null;
    this.users = new UserDirectory();
    /** @type {Map<string, Conversation>} */
    this.conversations = new Map();
    this.current = EVERYONE;
    /** @type {Map<string, number>} user -> when the notice expires (ms) */
    this.typing = new Map();
    /** @type {Notice[]} */
    this.notices = [];
    this.connection = { state: 'connecting', detail: {} };
    /** Server clock minus this browser's clock, in seconds. */
    this.clockOffset = 0;
    /** Whether the server refused guests or registration (the controls are then disabled). */
    this.refused = { guest: false, register: false };
    this.reset();
  }

  /** Forget the conversations and users (a different user logs in). */
  reset() {
    this.users.clear();
    this.conversations.clear();
    this.conversation(EVERYONE);
    this.current = EVERYONE;
    this.typing.clear();
    this.emit('reset');
    this.emit('users');
    this.emit('conversations');
    this.emit('current');
  }

  /** The server's time now, in seconds since the epoch. */
  serverNow() {
    return Date.now() / 1000 + this.clockOffset;
  }

  /**
   * Set who is logged in (`null`: nobody).
   * @param {object|null} me
   */
  setMe(me) {
    this.me = me;
    this.emit('me');
  }

  /**
   * Change fields of `me` (busy, hidden, ...).
   * @param {object} fields
   */
  updateMe(fields) {
    if (!this.me) return;
    Object.assign(this.me, fields);
    this.emit('me');
  }

  /**
   * The conversation `key`, created if new.
   * @param {string} key
   * @returns {Conversation}
   */
  conversation(key) {
    let conversation = this.conversations.get(key);
    if (!conversation) {
      conversation = new Conversation(key);
      this.conversations.set(key, conversation);
      this.emit('conversations');
    }
    return conversation;
  }

  /**
   * Add a message to conversation `key`; count it unread unless that
   * conversation is open (or the message is this user's own).
   * @param {string} key
   * @param {import('./conversations.js').ChatMessage} message
   * @returns {boolean} whether it was new
   */
  addMessage(key, message) {
    const conversation = this.conversation(key);
    if (!conversation.add(message)) return false;
    if (key !== this.current && message.kind === 'chat' && !message.own) {
      conversation.unread += 1;
      this.emit('conversations');
    }
    this.emit('messages', key);
    return true;
  }

  /**
   * Something about a message already shown changed (a delivery note).
   * @param {string} key
   */
  messagesChanged(key) {
    this.emit('messages', key);
  }

  /**
   * Open conversation `key` (its unread count goes to zero).
   * @param {string} key
   */
  open(key) {
    const conversation = this.conversation(key);
    this.current = key;
    conversation.unread = 0;
    this.emit('conversations');
    this.emit('current');
  }

  /**
   * Remove conversation `key` (a room this user left); opens "everyone" if it was open.
   * @param {string} key
   */
  removeConversation(key) {
    if (key === EVERYONE) return;
    this.conversations.delete(key);
    if (this.current === key) this.open(EVERYONE);
    this.emit('conversations');
  }

  /** The user list changed. */
  usersChanged() {
    this.emit('users');
  }

  /**
   * `user` started or stopped typing.
   * @param {string} user
   * @param {boolean} typing
   */
  setTyping(user, typing) {
    if (typing) this.typing.set(user, Date.now() + TYPING_TTL);
    else this.typing.delete(user);
    this.emit('typing');
  }

  /**
   * Who is typing now (expired notices are dropped).
   * @returns {string[]}
   */
  typingUsers() {
    const now = Date.now();
    for (const [user, until] of this.typing) if (until <= now) this.typing.delete(user);
    return [...this.typing.keys()].sort();
  }

  /**
   * The connection changed state (see {@link module:net/connection}).
   * @param {string} state
   * @param {object} [detail]
   */
  setConnection(state, detail = {}) {
    this.connection = { state, detail };
    this.emit('connection');
  }

  /**
   * Show a notice; one with a `topic` replaces the earlier one of that topic.
   * @param {'info'|'warning'|'error'} level
   * @param {string} text
   * @param {object} [options]
   * @param {string} [options.topic]
   * @param {Array<{label: string, run: Function}>} [options.actions]
   * @param {number} [options.retryUntil]
   * @returns {number} the notice's id
   */
  notify(level, text, { topic, actions = [], retryUntil } = {}) {
    if (topic) this.notices = this.notices.filter((notice) => notice.topic !== topic);
    noticeIds += 1;
    this.notices.push({ id: noticeIds, level, text, topic, actions, retryUntil });
    if (this.notices.length > 5) this.notices.shift();
    this.emit('notices');
    return noticeIds;
  }

  /**
   * Remove a notice by id, or every notice of a topic.
   * @param {number|string} idOrTopic
   */
  dismiss(idOrTopic) {
    this.notices = this.notices.filter(
      (notice) => notice.id !== idOrTopic && notice.topic !== idOrTopic,
    );
    this.emit('notices');
  }

  /** Remove every notice (after a logout). */
  clearNotices() {
    this.notices = [];
    this.emit('notices');
  }

  /**
   * What the login form says.
   * @param {string} text
   * @param {number} [retryUntil] time (ms) a lock-out ends, for a countdown
   */
  loginMessage(text, retryUntil) {
    this.emit('login', text, retryUntil);
  }
}
