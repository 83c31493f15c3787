/**
 * @module views/notices-view
 * The notices at the top of the page (server shutdown, lost connection,
 * replies worth a word), each with its buttons and a Dismiss button.
 */

import { byId, el, replaceChildren } from './dom.js';

/** Renders the store's notices. */
export class NoticesView {
  /** @param {import('../state/store.js').Store} store */
  constructor(store) {
    this.store = store;
    this.list = byId('notices');
    store.on('notices', () => this.render());
  }

  /** @private */
  render() {
    replaceChildren(this.list, this.store.notices.map((notice) => el(
      'li',
      { class: `notice notice-${notice.level}`, dataset: { topic: notice.topic ?? '' } },
      el('span', { class: 'notice-text' }, notice.text),
      notice.actions.map((action) => el('button', {
        type: 'button',
        onclick: () => {
          this.store.dismiss(notice.id);
          action.run();
        },
      }, action.label)),
      el('button', {
        type: 'button', class: 'dismiss', 'aria-label': 'Dismiss', title: 'Dismiss',
        onclick: () => this.store.dismiss(notice.id),
      }, '×'),
    )));
  }
}
