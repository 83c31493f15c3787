/**
 * @module views/header-view
 * The top bar: the connection's state (with "Reconnect now" while waiting),
 * who is logged in and their status, and the menu of status actions
 * (busy/available, hide/appear, status, change password, log out).
 */

import { byId } from './dom.js';

/** Renders the top bar and handles its menu. */
export class HeaderView {
  /**
   * @param {import('../state/store.js').Store} store
   * @param {import('../app/actions.js').ChatActions} actions
   * @param {import('../app/session.js').Session} session
   * @param {import('../net/connection.js').ReconnectingSocket} socket
   * @param {import('./dialogs.js').Dialogs} dialogs
   */
  constructor(store, actions, session, socket, dialogs) {
    this.store = store;
    this.text = byId('connection-text');
    this.reconnect = byId('reconnect-now');
    this.menu = byId('me-menu');
    this.countdown = null;
    this.reconnect.addEventListener('click', () => socket.connectNow());
    const menuItem = (id, run) => byId(id).addEventListener('click', () => {
      this.menu.open = false;
      run();
    });
    menuItem('busy-button', () => dialogs.openBusy());
    menuItem('idle-button', () => actions.idle());
    menuItem('hide-button', () => actions.setHidden(true));
    menuItem('appear-button', () => actions.setHidden(false));
    menuItem('status-button', () => actions.status(true));
    menuItem('password-button', () => dialogs.openPassword(store.me ? store.me.name : ''));
    menuItem('logout-button', () => session.logout());
    store.on('connection', () => this.renderConnection());
    store.on('me', () => this.renderMe());
    this.renderConnection();
    this.renderMe();
  }

  /** @private */
  renderConnection() {
    clearInterval(this.countdown);
    const { state, detail } = this.store.connection;
    this.reconnect.hidden = state !== 'waiting';
    document.body.dataset.connection = state;
    if (state === 'waiting') {
      const tick = () => {
        const left = Math.max(0, Math.ceil((detail.at - Date.now()) / 1000));
        this.text.textContent = `Offline. Reconnecting in ${left} s…`;
      };
      tick();
      this.countdown = setInterval(tick, 500);
    } else {
      this.text.textContent = {
        connecting: 'Connecting…', open: 'Connected', stopped: 'Disconnected',
      }[state] ?? state;
    }
  }

  /** @private */
  renderMe() {
    const me = this.store.me;
    byId('me').hidden = me === null;
    if (me === null) return;
    byId('me-name').textContent = me.name + (me.guest ? ' (guest)' : '');
    const words = [me.busy ? 'busy' : 'available'];
    if (me.hidden) words.push('hidden');
    byId('me-state').textContent = words.join(', ');
    byId('me-state').title = me.busy && me.autoReply ? `Auto-reply: ${me.autoReply}` : '';
    byId('busy-button').hidden = me.busy;
    byId('idle-button').hidden = !me.busy;
    byId('hide-button').hidden = me.hidden;
    byId('appear-button').hidden = !me.hidden;
    byId('password-button').hidden = me.guest;
  }
}
