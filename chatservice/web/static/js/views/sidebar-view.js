/**
 * @module views/sidebar-view
 * The side panel: the conversation list (with unread counts) and the user
 * list labelled "Users" (state, Message, Block/Unblock, Details, and a
 * checkbox to pick members of a new room). At phone width it is a panel
 * opened with the "Chats & users" button.
 */

import { EVERYONE, dmKey } from '../state/conversations.js';
import { stateWords } from '../state/users.js';
import { formatFullTime } from '../format.js';
import { byId, el, replaceChildren } from './dom.js';

/**
 * The conversations in list order: "everyone" first, then the latest active.
 * @param {Iterable<import('../state/conversations.js').Conversation>} conversations
 * @returns {import('../state/conversations.js').Conversation[]}
 */
export function listOrder(conversations) {
  return [...conversations].sort((a, b) => {
    if (a.key === EVERYONE || b.key === EVERYONE) return a.key === EVERYONE ? -1 : 1;
    return b.lastTimestamp - a.lastTimestamp || a.title.localeCompare(b.title);
  });
}

/** Renders the conversation and user lists. */
export class SidebarView {
  /**
   * @param {import('../state/store.js').Store} store
   * @param {import('../app/actions.js').ChatActions} actions
   */
  constructor(store, actions) {
    this.store = store;
    this.actions = actions;
    this.conversationList = byId('conversation-list');
    this.userList = byId('user-list');
    this.createRoom = byId('create-room');
    this.toggle = byId('toggle-sidebar');
    /** Users picked for a new room. @type {Set<string>} */
    this.selected = new Set();
    /** Users whose details are shown. @type {Set<string>} */
    this.expanded = new Set();

    this.createRoom.addEventListener('click', async () => {
      if (await actions.createRoom([...this.selected])) {
        this.selected.clear();
        this.renderUsers();
        this.close();
      }
    });
    this.toggle.addEventListener('click', () => this.setOpen(!document.body.classList.contains('sidebar-open')));
    store.on('conversations', () => this.renderConversations());
    store.on('current', () => this.renderConversations());
    store.on('users', () => this.renderUsers());
    store.on('me', () => {
      if (store.me === null) {
        this.selected.clear();
        this.expanded.clear();
      }
    });
    this.renderConversations();
    this.renderUsers();
  }

  /**
   * Open or close the panel (phone width).
   * @param {boolean} open
   */
  setOpen(open) {
    document.body.classList.toggle('sidebar-open', open);
    this.toggle.setAttribute('aria-expanded', String(open));
  }

  /** Close the panel (phone width). */
  close() {
    this.setOpen(false);
  }

  /**
   * Open conversation `key` (and close the panel at phone width).
   * @param {string} key
   */
  openConversation(key) {
    this.store.open(key);
    this.close();
  }

  /** @private */
  renderConversations() {
    const items = listOrder(this.store.conversations.values()).map((conversation) => {
      const current = conversation.key === this.store.current;
      const unread = conversation.unread;
      return el('li', {},
        el('button', {
          type: 'button',
          class: `conversation-item${current ? ' current' : ''}`,
          'aria-current': current ? 'true' : null,
          'aria-label': unread ? `${conversation.title}, ${unread} unread` : conversation.title,
          dataset: { key: conversation.key },
          onclick: () => this.openConversation(conversation.key),
        },
        el('span', { class: 'conversation-name' }, conversation.title),
        unread ? el('span', { class: 'unread', 'aria-hidden': 'true' }, String(unread)) : null));
    });
    replaceChildren(this.conversationList, items);
    const total = [...this.store.conversations.values()].reduce((sum, c) => sum + c.unread, 0);
    this.toggle.textContent = total ? `Chats & users (${total})` : 'Chats & users';
    document.title = total ? `(${total}) chatservice` : 'chatservice';
  }

  /** @private */
  renderUsers() {
    const users = this.store.users.sorted();
    for (const name of this.selected) {
      if (!users.some((user) => user.name === name && user.online)) this.selected.delete(name);
    }
    const items = users.map((user) => this.userItem(user));
    if (!items.length) items.push(el('li', { class: 'empty' }, 'No other users yet.'));
    replaceChildren(this.userList, items);
    this.createRoom.disabled = this.selected.size === 0;
    this.createRoom.textContent = this.selected.size
      ? `Create room with selected (${this.selected.size})` : 'Create room with selected';
  }

  /** @private */
  userItem(user) {
    const words = stateWords(user);
    const expanded = this.expanded.has(user.name);
    return el('li', { class: `user ${words.join(' ')}`, dataset: { user: user.name } },
      el('input', {
        type: 'checkbox',
        class: 'pick',
        'aria-label': `Pick ${user.name} for a new room`,
        title: user.online ? 'Pick for a new room' : 'Only online users can join a room',
        disabled: !user.online,
        checked: this.selected.has(user.name),
        onchange: (event) => {
          if (event.target.checked) this.selected.add(user.name);
          else this.selected.delete(user.name);
          this.renderUsers();
        },
      }),
      el('span', { class: 'presence', 'aria-hidden': 'true' }),
      el('span', { class: 'user-name' }, user.name),
      el('span', { class: 'user-state' }, words.join(', ')),
      el('span', { class: 'user-actions' },
        el('button', {
          type: 'button', 'aria-label': `Message ${user.name}`,
          onclick: () => this.openConversation(dmKey(user.name)),
        }, 'Message'),
        el('button', {
          type: 'button', 'aria-label': `${user.blocked ? 'Unblock' : 'Block'} ${user.name}`,
          onclick: () => this.actions.setBlocked(user.name, !user.blocked),
        }, user.blocked ? 'Unblock' : 'Block'),
        el('button', {
          type: 'button', 'aria-label': `Details of ${user.name}`, 'aria-expanded': String(expanded),
          onclick: () => this.toggleDetails(user.name),
        }, 'Details')),
      expanded ? el('p', { class: 'user-details' }, detailsText(user)) : null);
  }

  /** @private Show or hide a user's details; asks the server (`active`) when shown. */
  toggleDetails(name) {
    if (this.expanded.has(name)) {
      this.expanded.delete(name);
      this.renderUsers();
      return;
    }
    this.expanded.add(name);
    this.store.users.get(name).detailsLoaded = false;
    this.renderUsers();
    this.actions.loadDetails();
  }
}

/**
 * A user's `active` details in words.
 * @param {import('../state/users.js').UserInfo} user
 * @returns {string}
 */
export function detailsText(user) {
  if (!user.detailsLoaded) return 'Loading…';
  if (!user.details) {
    return user.busy && user.autoReply ? `Not listed as active. Auto-reply: ${user.autoReply}` : 'Not listed as active (offline or hidden).';
  }
  const { host, p2p_port: port, since } = user.details;
  const parts = [`From ${host}`, `peer port ${port ?? '-'}`, `online since ${formatFullTime(since)}`];
  if (user.autoReply && user.busy) parts.push(`auto-reply: ${user.autoReply}`);
  return `${parts.join(', ')}.`;
}
