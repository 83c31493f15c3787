/**
 * @module main
 * The page's entry point: builds the parts and wires them together.
 *
 *     ReconnectingSocket ── JSON objects ──> Session ──> RequestChannel (replies by id)
 *                                               └──────> ServerEvents ──> Store ──> views
 *     views ──> ChatActions / Session ──> RequestChannel ──> ReconnectingSocket
 */

import { LoginFlow } from './auth/login.js';
import { ChatActions } from './app/actions.js';
import { ServerEvents } from './app/events.js';
import { Session } from './app/session.js';
import { installKeyboard } from './keyboard.js';
import { ReconnectingSocket, socketUrl } from './net/connection.js';
import { RequestChannel } from './net/requests.js';
import { Store } from './state/store.js';
import { TypingSender } from './typing.js';
import { ConversationView } from './views/conversation-view.js';
import { Dialogs } from './views/dialogs.js';
import { HeaderView } from './views/header-view.js';
import { LoginView } from './views/login-view.js';
import { NoticesView } from './views/notices-view.js';
import { SidebarView } from './views/sidebar-view.js';

/** Build the page's parts, wire them, and connect. */
function main() {
  const store = new Store();
  const socket = new ReconnectingSocket(socketUrl(window.location));
  const requests = new RequestChannel((message) => socket.send(message));
  let session = null;
  const events = new ServerEvents(store, { seen: (timestamp) => session && session.markSeen(timestamp) });
  const actions = new ChatActions(store, requests, events);
  const typing = new TypingSender((status, to) => actions.typing(status, to));
  let storage = null;
  try {
    storage = window.localStorage;
  } catch (error) {
    // storage disabled: no "since your last visit"
  }
  session = new Session({
    store, socket, requests, login: new LoginFlow(requests), events, actions, typing, storage,
  });
  const dialogs = new Dialogs(actions, session);
  new LoginView(store, session);
  new NoticesView(store);
  new HeaderView(store, actions, session, socket, dialogs);
  const sidebar = new SidebarView(store, actions);
  new ConversationView(store, actions, typing);
  installKeyboard(store, sidebar);
  window.addEventListener('pagehide', () => {
    if (store.me) session.markSeen(store.serverNow());
  });
  session.start();
}

main();
