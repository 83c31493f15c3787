/**
 * @module views/conversation-view
 * The open conversation: its title (and members, and "Leave room" for a
 * room), "Load earlier", the messages with their times and marks, who is
 * typing, and the Message box with Send. The text being typed is never
 * cleared unless the server took it; each conversation keeps its own draft.
 */

import { formatFullTime, formatTime } from '../format.js';
import { typingTarget } from '../typing.js';
import { describeError } from '../app/actions.js';
import { byId, el, replaceChildren } from './dom.js';

/** The most messages drawn at once (the latest). */
const MAX_SHOWN = 500;

/**
 * Who of `typing` to mention under `conversation`: the partner of a direct
 * conversation, the members of a room, anyone for "everyone".
 * @param {import('../state/conversations.js').Conversation} conversation
 * @param {string[]} typing
 * @returns {string}
 */
export function typingLine(conversation, typing) {
  let names = typing;
  if (conversation.kind === 'dm') names = typing.filter((name) => name === conversation.user);
  if (conversation.kind === 'room') names = typing.filter((name) => conversation.members.includes(name));
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length <= 3) return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]} are typing…`;
  return `${names.length} people are typing…`;
}

/** Renders the open conversation and sends what is typed. */
export class ConversationView {
  /**
   * @param {import('../state/store.js').Store} store
   * @param {import('../app/actions.js').ChatActions} actions
   * @param {import('../typing.js').TypingSender} typing
   */
  constructor(store, actions, typing) {
    this.store = store;
    this.actions = actions;
    this.typing = typing;
    this.list = byId('messages');
    this.input = byId('message-input');
    this.typingText = byId('typing');
    this.historyState = byId('history-state');
    /** Drafts of the conversations not open. @type {Map<string, string>} */
    this.drafts = new Map();
    this.shownKey = store.current;

    byId('composer').addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener('input', () => {
      if (!this.input.value) {
        this.typing.stop();
        return;
      }
      this.typing.typed(typingTarget(this.store.conversation(this.store.current)));
    });
    byId('load-earlier').addEventListener('click', () => this.loadEarlier());
    byId('leave-room').addEventListener('click', () => {
      const conversation = this.store.conversation(this.store.current);
      if (conversation.kind === 'room') this.actions.leaveRoom(conversation.room);
    });
    store.on('current', () => this.switched());
    store.on('conversations', () => this.renderHeader());
    store.on('messages', (key) => {
      if (key === this.store.current) this.renderMessages();
    });
    store.on('typing', () => this.renderTyping());
    store.on('reset', () => {
      this.drafts.clear();
      this.input.value = '';
      this.shownKey = store.current;
    });
    store.on('me', () => this.renderHeader());
    setInterval(() => this.renderTyping(), 1000);
    this.switched();
  }

  /** @private Another conversation was opened: swap drafts, redraw. */
  switched() {
    if (this.shownKey !== this.store.current) {
      this.typing.stop();
      this.drafts.set(this.shownKey, this.input.value);
      this.input.value = this.drafts.get(this.store.current) ?? '';
      this.drafts.delete(this.store.current);
      this.shownKey = this.store.current;
      this.historyState.textContent = '';
      if (!byId('chat-screen').hidden && window.matchMedia('(min-width: 721px)').matches) this.input.focus();
    }
    this.renderHeader();
    this.renderMessages(true);
    this.renderTyping();
  }

  /** @private */
  async send() {
    const text = this.input.value;
    if (!text.trim()) return;
    this.typing.stop();
    const key = this.store.current;
    try {
      await this.actions.send(text);
    } catch (error) {
      this.store.notify('warning', `Not sent (your text is kept): ${describeError(error)}`, { topic: 'send' });
      return;
    }
    this.store.dismiss('send');
    if (this.store.current === key) {
      if (this.input.value === text) this.input.value = '';
    } else if (this.drafts.get(key) === text) {
      this.drafts.delete(key);
    }
  }

  /** @private */
  async loadEarlier() {
    this.historyState.textContent = 'Loading…';
    this.historyState.textContent = await this.actions.loadEarlier();
  }

  /** @private */
  renderHeader() {
    const conversation = this.store.conversation(this.store.current);
    byId('conversation-title').textContent = conversation.kind === 'dm'
      ? `${conversation.title} (direct)` : conversation.title;
    byId('conversation-members').textContent = conversation.kind === 'room'
      ? conversation.members.join(', ') : '';
    byId('leave-room').hidden = conversation.kind !== 'room';
    byId('load-earlier').hidden = conversation.kind === 'dm';
    const where = conversation.kind === 'dm' ? conversation.user : conversation.title;
    this.input.placeholder = `Message ${where}…`;
  }

  /**
   * @private Draw the open conversation's messages, keeping the reader's
   * place: at the bottom if they were there, else where they were.
   * @param {boolean} [jump] scroll to the bottom (another conversation)
   */
  renderMessages(jump = false) {
    const conversation = this.store.conversation(this.store.current);
    const list = this.list;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const fromBottom = list.scrollHeight - list.scrollTop;
    const messages = conversation.messages.slice(-MAX_SHOWN);
    const items = messages.map((message) => messageItem(message));
    if (!items.length) items.push(el('li', { class: 'empty' }, emptyText(conversation)));
    replaceChildren(list, items);
    if (jump || atBottom) list.scrollTop = list.scrollHeight;
    else list.scrollTop = list.scrollHeight - fromBottom;
  }

  /** @private */
  renderTyping() {
    const conversation = this.store.conversation(this.store.current);
    const text = typingLine(conversation, this.store.typingUsers());
    if (this.typingText.textContent !== text) this.typingText.textContent = text;
  }
}

/**
 * What an empty conversation says.
 * @param {import('../state/conversations.js').Conversation} conversation
 * @returns {string}
 */
function emptyText(conversation) {
  if (conversation.kind === 'dm') return `No messages with ${conversation.user} yet.`;
  if (conversation.kind === 'room') return `No messages in room ${conversation.room} yet.`;
  return 'No broadcasts yet. What you send here goes to everyone online.';
}

/**
 * One message as a list item: sender, time, text, marks.
 * @param {import('../state/conversations.js').ChatMessage} message
 * @returns {HTMLLIElement}
 */
export function messageItem(message) {
  const classes = ['message', message.kind];
  if (message.own) classes.push('own');
  if (message.offline) classes.push('offline');
  const time = el('time', {
    datetime: new Date(message.timestamp * 1000).toISOString(),
    title: formatFullTime(message.timestamp),
  }, formatTime(message.timestamp));
  const marks = [];
  if (message.offline) marks.push(el('span', { class: 'mark' }, 'kept while you were offline'));
  if (message.note) marks.push(el('span', { class: 'mark' }, message.note));
  if (message.kind === 'system') {
    return el('li', { class: classes.join(' ') }, time, ' ', el('span', { class: 'text' }, message.text));
  }
  return el('li', { class: classes.join(' ') },
    el('span', { class: 'meta' }, el('span', { class: 'from' }, message.own ? `${message.from} (you)` : message.from), ' ', time, marks),
    el('span', { class: 'text' }, message.text));
}
