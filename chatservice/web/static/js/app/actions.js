/**
 * @module app/actions
 * What the user does, as requests to the server, and their replies applied
 * to the store. Each method returns a promise; failures are shown as notices
 * (or notes in the conversation) and never thrown at the views, except by
 * {@link ChatActions#send}, whose caller keeps the text when it fails.
 */

import { formatDuration, formatFullTime } from '../format.js';
import { RequestError } from '../net/requests.js';
import { EVERYONE, channelKey, dmKey, localId, roomKey } from '../state/conversations.js';

/** The first step of "load earlier", in seconds; each further click doubles it. */
const HISTORY_STEP = 3600;
/** The longest step of "load earlier", in seconds. */
const HISTORY_MAX_STEP = 30 * 24 * 3600;
/**
 * Pages of history asked for at once, then one a {@link HISTORY_PAGE_PACE_MS}:
 * under the server's flood limit (20 lines at once, then 5 a second), so a long
 * history never gets the page disconnected for flooding.
 */
const HISTORY_PAGES_AT_ONCE = 10;
const HISTORY_PAGE_PACE_MS = 250;

/** A failed request in words. */
export function describeError(error) {
  if (error instanceof RequestError) return error.message;
  return `Something went wrong: ${error && error.message ? error.message : error}`;
}

/** The user's actions. */
export class ChatActions {
  /**
   * @param {import('../state/store.js').Store} store
   * @param {import('../net/requests.js').RequestChannel} requests
   * @param {import('./events.js').ServerEvents} events for notes in conversations
   */
  constructor(store, requests, events) {
    this.store = store;
    this.requests = requests;
    this.events = events;
    /** The earliest time (server clock, seconds) history was loaded from. */
    this.historyFrom = null;
    this.historyStep = HISTORY_STEP;
  }

  /** @private Run a request; show its failure as a notice; resolve to the reply or `null`. */
  async attempt(message) {
    try {
      return await this.requests.request(message);
    } catch (error) {
      this.store.notify('warning', describeError(error));
      return null;
    }
  }

  // Messages ---------------------------------------------------------------

  /**
   * Send `text` to the open conversation and show it once the server took it.
   * @param {string} text
   * @returns {Promise<void>}
   * @throws {RequestError} not sent (no connection, refused): the caller keeps the text
   */
  async send(text) {
    const conversation = this.store.conversation(this.store.current);
    if (conversation.kind === 'dm') return this.sendDirect(conversation.user, text);
    if (conversation.kind === 'room') return this.sendRoom(conversation.room, text);
    return this.sendBroadcast(text);
  }

  /** @private */
  own(key, id, text, timestamp, note) {
    this.store.addMessage(key, {
      id, kind: 'chat', from: this.store.me.name, text, timestamp, own: true, note,
    });
  }

  /** @private */
  autoReplies(key, replies) {
    for (const { user, message } of replies ?? []) {
      this.store.users.markBusy(user, message);
      this.events.note(key, `${user} is busy (auto-reply): ${message}`);
    }
    if (replies && replies.length) this.store.usersChanged();
  }

  /** @private */
  async sendBroadcast(text) {
    const reply = await this.requests.request({ type: 'broadcast', message: text });
    const notes = [];
    if (reply.delivered === 0) notes.push('nobody else received it');
    if (reply.skipped) notes.push(`${reply.skipped} recipient(s) blocked you`);
    this.own(EVERYONE, `#${reply.seq}`, text, reply.timestamp, notes.join('; ') || undefined);
    this.autoReplies(EVERYONE, reply.auto_replies);
  }

  /** @private */
  async sendDirect(user, text) {
    const key = dmKey(user);
    let reply;
    try {
      reply = await this.requests.request({ type: 'message', to: user, message: text });
    } catch (error) {
      if (error instanceof RequestError && error.code === 'blocked') {
        this.events.note(key, `Not delivered: ${user} has blocked you.`);
        return;
      }
      throw error;
    }
    let note;
    if (reply.busy) note = `kept until ${user} is available`;
    else if (reply.stored) note = `kept until ${user} logs in`;
    this.own(key, localId(), text, this.store.serverNow(), note);
    if (reply.auto_reply !== undefined) this.autoReplies(key, [{ user, message: reply.auto_reply }]);
  }

  /** @private */
  async sendRoom(room, text) {
    const reply = await this.requests.request({ type: 'room_send', room, message: text });
    const notes = [];
    if (reply.delivered === 0) notes.push('no other member received it now');
    if (reply.skipped) notes.push(`${reply.skipped} member(s) blocked you`);
    this.own(roomKey(room), `#${reply.seq}`, text, reply.timestamp, notes.join('; ') || undefined);
  }

  /**
   * Tell `to` (`''`: everyone) that this user is (not) typing. Fire and forget.
   * @param {boolean} status
   * @param {string} to
   */
  typing(status, to) {
    const message = { type: 'typing', status };
    if (to) message.to = to;
    this.requests.request(message).catch(() => {});
  }

  // History -----------------------------------------------------------------

  /**
   * Load the broadcasts and room messages posted after `since` (server clock).
   * The server answers a page at a time (`more`, and the `next` cursor to
   * ask for the following page with `read_next`): every page is loaded,
   * paced under the server's flood limit.
   * @param {number} since seconds since the epoch
   * @returns {Promise<number|null>} how many were new here, or `null` on failure
   */
  async loadHistory(since) {
    let reply = await this.attempt({ type: 'read', since: Math.max(0, Math.floor(since)) });
    if (!reply) return null;
    let added = this.addHistory(reply.messages ?? []);
    let pages = 1;
    while (reply.more && reply.next) {
      if (pages >= HISTORY_PAGES_AT_ONCE) {
        await new Promise((resolve) => setTimeout(resolve, HISTORY_PAGE_PACE_MS));
      }
      pages += 1;
      reply = await this.attempt({ type: 'read_next', after: reply.next });
      if (!reply) return null;
      added += this.addHistory(reply.messages ?? []);
    }
    if (this.historyFrom === null || since < this.historyFrom) this.historyFrom = since;
    return added;
  }

  /**
   * @private Add the messages of one page of history to their conversations.
   * @returns {number} how many were new here
   */
  addHistory(messages) {
    let added = 0;
    const me = this.store.me ? this.store.me.name : '';
    for (const entry of messages) {
      const key = channelKey(entry.channel);
      if (key === null) continue;
      const isNew = this.store.addMessage(key, {
        id: `#${entry.seq}`, kind: 'chat', from: entry.from, text: entry.message,
        timestamp: entry.timestamp, own: entry.from === me, history: true,
      });
      if (isNew) added += 1;
    }
    return added;
  }

  /** Forget how far back history was loaded (another user logged in). */
  resetHistory() {
    this.historyFrom = null;
    this.historyStep = HISTORY_STEP;
  }

  /**
   * "Load earlier": the hour before what is loaded, then two hours before
   * that, and so on (the step doubles, up to 30 days).
   * @returns {Promise<string>} what happened, in words
   */
  async loadEarlier() {
    const from = this.historyFrom ?? this.store.serverNow();
    const since = from - this.historyStep;
    const added = await this.loadHistory(since);
    if (added === null) return '';
    this.historyStep = Math.min(this.historyStep * 2, HISTORY_MAX_STEP);
    const when = formatFullTime(since);
    return added ? `Loaded ${added} earlier message(s) since ${when}.` : `Nothing more since ${when}.`;
  }

  // Users -------------------------------------------------------------------

  /** Ask who is online and which accounts are not. */
  async refreshUsers() {
    const me = this.store.me ? this.store.me.name : '';
    const [online, offline] = await Promise.all([
      this.attempt({ type: 'whoelse' }),
      this.attempt({ type: 'users', onlinetype: false }),
    ]);
    if (offline) this.store.users.applyList(offline, me);
    if (online) this.store.users.applyList(online, me);
    this.store.usersChanged();
  }

  /**
   * Block (`blocked` true) or unblock `user`.
   * @param {string} user
   * @param {boolean} blocked
   */
  async setBlocked(user, blocked) {
    const entry = this.store.users.get(user);
    try {
      const reply = await this.requests.request({ type: blocked ? 'block' : 'unblock', target: user });
      entry.blocked = Boolean(reply.blocked);
      this.store.notify('info', `${user} is ${entry.blocked ? 'now blocked' : 'unblocked'}.`);
    } catch (error) {
      if (error.code === 'already_blocked') entry.blocked = true;
      else if (error.code === 'not_blocked') entry.blocked = false;
      else this.store.notify('warning', describeError(error));
    }
    this.store.usersChanged();
  }

  /** Ask for the details (`active`) of the online users. */
  async loadDetails() {
    const reply = await this.attempt({ type: 'active' });
    if (!reply) return;
    this.store.users.applyActive(reply.users ?? []);
    this.store.usersChanged();
  }

  // Own status --------------------------------------------------------------

  /**
   * Become busy with `autoReply` (the server's default when empty).
   * @param {string} autoReply
   */
  async busy(autoReply) {
    const message = { type: 'busy' };
    if (autoReply) message.message = autoReply;
    const reply = await this.attempt(message);
    if (reply) this.store.updateMe({ busy: true, autoReply: reply.auto_reply ?? autoReply, busySince: this.store.serverNow() });
  }

  /** Become available: the kept direct messages arrive; the missed others are loaded. */
  async idle() {
    const since = this.store.me ? this.store.me.busySince : undefined;
    const reply = await this.attempt({ type: 'idle' });
    if (!reply) return;
    this.store.updateMe({ busy: false, autoReply: '' });
    this.store.notify(
      'info',
      `You are available again: ${reply.kept} direct message(s) were kept for you;` +
        ` you missed ${reply.missed} broadcast or room message(s).`,
      { topic: 'status' },
    );
    if (reply.missed && since !== undefined) await this.loadHistory(since - 1);
  }

  /**
   * Hide from the other users' lists (`hidden` true) or appear again.
   * @param {boolean} hidden
   */
  async setHidden(hidden) {
    const reply = await this.attempt({ type: hidden ? 'hide' : 'appear' });
    if (reply) this.store.updateMe({ hidden: reply.status === 'hidden' });
  }

  /**
   * Ask for this user's status; it is shown as a notice (and sets the clock offset).
   * @param {boolean} [show=true] show the notice
   */
  async status(show = true) {
    const reply = await this.attempt({ type: 'status' });
    if (!reply) return;
    this.store.clockOffset = reply.logged_in_at + reply.online_for - Date.now() / 1000;
    this.store.updateMe({ busy: reply.busy, hidden: reply.hidden, autoReply: reply.auto_reply ?? '' });
    if (!show) return;
    const parts = [reply.busy ? `busy (auto-reply: ${reply.auto_reply ?? 'default'})` : 'available'];
    parts.push(reply.hidden ? 'hidden' : 'visible');
    this.store.notify(
      'info',
      `You are ${parts.join(' and ')}; logged in since ${formatFullTime(reply.logged_in_at)}` +
        ` (${formatDuration(reply.online_for)}).`,
      { topic: 'status' },
    );
  }

  // Rooms -------------------------------------------------------------------

  /** Learn this user's rooms (after logging in). */
  async loadRooms() {
    const reply = await this.attempt({ type: 'rooms' });
    for (const { room, members } of reply ? reply.rooms : []) {
      this.store.conversation(roomKey(room)).members = [...members];
    }
    this.store.emit('conversations');
  }

  /**
   * Create (or reuse) the room of this user and `members`, and open it.
   * @param {string[]} members
   */
  async createRoom(members) {
    const reply = await this.attempt({ type: 'room_create', members });
    if (!reply) return false;
    const key = roomKey(reply.room);
    this.store.conversation(key).members = [...reply.members];
    this.events.note(
      key,
      `Room ${reply.room} ${reply.existed ? 'already exists' : 'created'} with ${reply.members.join(', ')}.`,
    );
    this.store.open(key);
    return true;
  }

  /**
   * Leave room `room`.
   * @param {number} room
   */
  async leaveRoom(room) {
    const reply = await this.attempt({ type: 'room_leave', room });
    if (!reply) return;
    this.store.removeConversation(roomKey(room));
    this.store.notify('info', `You left room ${room}.`);
  }

  /**
   * Change this user's password.
   * @param {string} oldPassword
   * @param {string} newPassword
   * @returns {Promise<string|null>} `null` when it worked, else why not
   */
  async changePassword(oldPassword, newPassword) {
    try {
      await this.requests.request({ type: 'passwd', old: oldPassword, new: newPassword });
      this.store.notify('info', 'Your password has been changed.');
      return null;
    } catch (error) {
      return describeError(error);
    }
  }
}
