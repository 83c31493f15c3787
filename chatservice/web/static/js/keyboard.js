/**
 * @module keyboard
 * Keyboard shortcuts: Alt+ArrowUp / Alt+ArrowDown open the previous / next
 * conversation; Escape closes the side panel (phone width) and the menu.
 * Everything else is plain HTML: Tab moves between controls, Enter sends.
 */

import { listOrder } from './views/sidebar-view.js';

/**
 * Listen for the shortcuts.
 * @param {import('./state/store.js').Store} store
 * @param {import('./views/sidebar-view.js').SidebarView} sidebar
 */
export function installKeyboard(store, sidebar) {
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      sidebar.close();
      document.getElementById('me-menu').open = false;
      return;
    }
    if (!event.altKey || !store.me || (event.key !== 'ArrowUp' && event.key !== 'ArrowDown')) return;
    const keys = listOrder(store.conversations.values()).map((conversation) => conversation.key);
    const step = event.key === 'ArrowUp' ? -1 : 1;
    const index = keys.indexOf(store.current);
    const next = keys[(index + step + keys.length) % keys.length];
    event.preventDefault();
    store.open(next);
  });
}
