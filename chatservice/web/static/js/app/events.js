/**
 * @module app/events
 * What the server says on its own (messages, presence, typing, rooms),
 * applied to the store. Replies to this page's requests are handled where
 * they were sent (see {@link module:app/actions}); the end of a connection
 * (`disconnect`, `shutdown`, ...) by {@link module:app/session}.
 */

import { EVERYONE, dmKey, localId, roomKey } from '../state/conversations.js';

/** Applies server events to a {@link module:state/store.Store}. */
export class ServerEvents {
  /**
   * @param {import('../state/store.js').Store} store
   * @param {object} [hooks]
   * @param {(timestamp: number) => void} [hooks.seen] a broadcast or room
   *   message of that time arrived (for "since your last visit")
   */
  constructor(store, { seen = () => {} } = {}) {
    this.store = store;
    this.seen = seen;
    /** @type {Record<string, (message: object) => void>} */
    this.handlers = {
      message: (m) => this.direct(m),
      broadcast: (m) => this.broadcast(m),
      room_message: (m) => this.roomMessage(m),
      room_joined: (m) => this.roomJoined(m),
      room_left: (m) => this.roomLeft(m),
      user_notification: (m) => this.presence(m),
      typing: (m) => this.store.setTyping(String(m.user), Boolean(m.status)),
      private_request: (m) => this.peerOnly(m.from, 'start a private chat'),
      file_incoming: (m) => this.peerOnly(m.from, `send you the file ${m.filename}`),
      error: (m) => this.store.notify('warning', m.message ?? `Error: ${m.code}`),
      server_notice: (m) => this.serverNotice(m),
      // The count of broadcasts and room messages since the last logout: this
      // page reads them itself (since the last visit on this browser).
      missed: () => {},
    };
  }

  /**
   * Apply one server message without an `id`.
   * @param {object} message
   * @returns {boolean} whether it was one this module handles
   */
  handle(message) {
    const handler = this.handlers[message.type];
    if (!handler) return false;
    handler(message);
    return true;
  }

  /**
   * Add a note of the page (not a person's message) to conversation `key`.
   * @param {string} key
   * @param {string} text
   */
  note(key, text) {
    this.store.addMessage(key, {
      id: localId(), kind: 'system', text, timestamp: this.store.serverNow(),
    });
  }

  /** @private A person's message arrived: they are online, and no longer typing. */
  heard(from) {
    this.store.users.sawOnline(from);
    this.store.usersChanged();
    this.store.setTyping(from, false);
  }

  /** @private */
  direct(m) {
    const from = String(m.from);
    if (!m.offline) this.heard(from);
    this.store.addMessage(dmKey(from), {
      id: localId(), kind: 'chat', from, text: String(m.message),
      timestamp: Number(m.timestamp), offline: Boolean(m.offline),
    });
  }

  /** @private */
  broadcast(m) {
    this.heard(String(m.from));
    this.store.addMessage(EVERYONE, {
      id: `#${m.seq}`, kind: 'chat', from: String(m.from), text: String(m.message),
      timestamp: Number(m.timestamp),
    });
    this.seen(Number(m.timestamp));
  }

  /** @private */
  roomMessage(m) {
    this.heard(String(m.from));
    this.store.addMessage(roomKey(m.room), {
      id: `#${m.seq}`, kind: 'chat', from: String(m.from), text: String(m.message),
      timestamp: Number(m.timestamp),
    });
    this.seen(Number(m.timestamp));
  }

  /** @private */
  roomJoined(m) {
    const key = roomKey(m.room);
    const conversation = this.store.conversation(key);
    conversation.members = [...m.members];
    conversation.left = false;
    this.note(key, `${m.by} added you to room ${m.room} with ${m.members.join(', ')}.`);
    this.store.emit('conversations');
  }

  /** @private */
  roomLeft(m) {
    const key = roomKey(m.room);
    if (this.store.me && m.user === this.store.me.name) {
      this.store.removeConversation(key);
      this.store.notify('info', `You left room ${m.room}.`);
      return;
    }
    const conversation = this.store.conversations.get(key);
    if (!conversation) return;
    conversation.members = conversation.members.filter((member) => member !== m.user);
    this.note(key, `${m.user} left room ${m.room}.`);
    this.store.emit('conversations');
  }

  /** @private */
  presence(m) {
    const user = String(m.user);
    const online = Boolean(m.status);
    this.store.users.presence(user, online);
    this.store.usersChanged();
    if (!online) this.store.setTyping(user, false);
    if (this.store.conversations.has(dmKey(user))) {
      this.note(dmKey(user), `${user} logged ${online ? 'in' : 'out'}.`);
    }
  }

  /** @private An operator's notice to everyone: at the top of the page, and in Everyone. */
  serverNotice(m) {
    const text = `Server notice from ${m.from}: ${m.message}`;
    this.store.notify('warning', text);
    this.note(EVERYONE, `*** ${text}`);
  }

  /** @private A request for what only the terminal client does (peer to peer). */
  peerOnly(from, what) {
    this.note(dmKey(String(from)), `${from} wants to ${what}; that needs the terminal client (chat-client).`);
  }
}
