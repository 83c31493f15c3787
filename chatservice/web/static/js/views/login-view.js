/**
 * @module views/login-view
 * The login form (Username, Password; Log in, Register, Guest) and what it
 * says: refusals, with a countdown while a lock-out lasts. It is shown while
 * nobody is logged in; the chat screen otherwise.
 */

import { formatDuration } from '../format.js';
import { byId } from './dom.js';

/** Shows the login form or the chat, and submits logins. */
export class LoginView {
  /**
   * @param {import('../state/store.js').Store} store
   * @param {import('../app/session.js').Session} session
   */
  constructor(store, session) {
    this.store = store;
    this.session = session;
    this.form = byId('login-form');
    this.username = byId('login-username');
    this.password = byId('login-password');
    this.message = byId('login-message');
    this.registerButton = byId('register-button');
    this.guestButton = byId('guest-button');
    this.countdown = null;

    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit('login');
    });
    this.registerButton.addEventListener('click', () => this.submit('register'));
    this.guestButton.addEventListener('click', () => this.submit('guest'));
    store.on('me', () => this.showScreen());
    store.on('login', (text, retryUntil) => this.say(text, retryUntil));
    this.showScreen();
  }

  /** @private */
  submit(mode) {
    this.session.submit(mode, this.username.value, this.password.value);
  }

  /** @private The login screen while nobody is logged in, else the chat. */
  showScreen() {
    const loggedIn = this.store.me !== null;
    const wasHidden = byId('login-screen').hidden;
    byId('login-screen').hidden = loggedIn;
    byId('chat-screen').hidden = !loggedIn;
    this.registerButton.disabled = this.store.refused.register;
    this.guestButton.disabled = this.store.refused.guest;
    this.registerButton.title = this.store.refused.register ? 'This server does not take new accounts.' : '';
    this.guestButton.title = this.store.refused.guest ? 'This server does not allow guests.' : '';
    if (loggedIn) {
      this.password.value = '';
    } else if (wasHidden) {
      (this.username.value ? this.password : this.username).focus();
    }
  }

  /**
   * @private Show `text`; with `retryUntil`, count down the time left.
   * @param {string} text
   * @param {number} [retryUntil] ms since the epoch
   */
  say(text, retryUntil) {
    clearInterval(this.countdown);
    this.countdown = null;
    this.message.textContent = text;
    this.message.classList.toggle('locked', retryUntil !== undefined);
    if (retryUntil === undefined) return;
    const said = text.replace(/ \(about .* left\)$/, '');
    const base = /[.!?]$/.test(said) ? said : `${said}.`;
    const tick = () => {
      const left = (retryUntil - Date.now()) / 1000;
      if (left <= 0) {
        clearInterval(this.countdown);
        this.message.textContent = `${base} You may try again now.`;
        this.message.classList.remove('locked');
        return;
      }
      this.message.textContent = `${base} Try again in ${formatDuration(left)}.`;
    };
    tick();
    this.countdown = setInterval(tick, 1000);
  }
}
