/**
 * @module views/dialogs
 * The two forms that open over the page: "Busy" (the auto-reply text) and
 * "Change password". Escape or Cancel closes them.
 */

import { byId } from './dom.js';

/** Opens the dialogs and submits them. */
export class Dialogs {
  /**
   * @param {import('../app/actions.js').ChatActions} actions
   * @param {import('../app/session.js').Session} session
   */
  constructor(actions, session) {
    this.busyDialog = byId('busy-dialog');
    this.passwordDialog = byId('password-dialog');
    for (const dialog of [this.busyDialog, this.passwordDialog]) {
      for (const button of dialog.querySelectorAll('.dialog-cancel')) {
        button.addEventListener('click', () => dialog.close());
      }
    }
    byId('busy-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.busyDialog.close();
      actions.busy(byId('busy-text').value.trim());
    });
    byId('password-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const message = byId('password-message');
      const [old, fresh, repeat] = ['old-password', 'new-password', 'repeat-password'].map((id) => byId(id).value);
      if (!old || !fresh) {
        message.textContent = 'Fill in the current and the new password.';
        return;
      }
      if (fresh !== repeat) {
        message.textContent = 'The new passwords differ.';
        return;
      }
      message.textContent = 'Changing…';
      const problem = await actions.changePassword(old, fresh);
      if (problem) {
        message.textContent = problem;
        return;
      }
      session.passwordChanged(fresh);
      this.passwordDialog.close();
    });
  }

  /** Open the "Busy" dialog. */
  openBusy() {
    this.busyDialog.showModal();
    byId('busy-text').focus();
  }

  /**
   * Open the "Change password" dialog, emptied.
   * @param {string} username for password managers
   */
  openPassword(username) {
    byId('password-username').value = username;
    for (const id of ['old-password', 'new-password', 'repeat-password']) byId(id).value = '';
    byId('password-message').textContent = '';
    this.passwordDialog.showModal();
    byId('old-password').focus();
  }
}
